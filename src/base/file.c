/* Atomic file writing: a temporary file next to the target, fsync, rename
 * over it, then fsync of the directory (best effort). base.h. */
#include "qkit/base.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

qk_status qk_file_write_atomic(const char *path, qk_write_fn fn, void *ctx)
{
    size_t n = strlen(path) + 16;
    char *tmp = qk_malloc(n);
    if (!tmp)
        return qk_error(QK_ERR_NOMEM, "out of memory writing '%s'", path);
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        qk_status st = qk_error(QK_ERR_IO, "cannot create a temporary file next to '%s': %s", path,
                                strerror(errno));
        qk_free(tmp);
        return st;
    }
    (void)fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        qk_free(tmp);
        return qk_error(QK_ERR_IO, "cannot write '%s': %s", path, strerror(e));
    }
    errno = 0;
    qk_status st = fn(f, ctx);
    int e = 0;
    if (st == QK_OK && (fflush(f) != 0 || ferror(f)))
        e = errno ? errno : EIO;
    if (st == QK_OK && !e && fsync(fileno(f)) != 0)
        e = errno ? errno : EIO;
    if (fclose(f) != 0 && !e)
        e = errno ? errno : EIO;
    if (st == QK_OK && !e && rename(tmp, path) != 0)
        e = errno ? errno : EIO;
    if (st == QK_OK && e)
        st = qk_error(QK_ERR_IO, "cannot write '%s': %s (nothing was written)", path, strerror(e));
    if (st != QK_OK) {
        unlink(tmp);
        qk_free(tmp);
        return e ? st : qk_error_context(st, "writing '%s' (nothing was written)", path);
    }
    char *dirc = qk_strdup(path); /* make the rename durable too */
    if (dirc) {
        int dfd = open(dirname(dirc), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        qk_free(dirc);
    }
    qk_free(tmp);
    return QK_OK;
}
