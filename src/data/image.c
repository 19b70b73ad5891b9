/* Image files: PNG (libpng) and JPEG (libjpeg-turbo) decoding, channel
 * conversion and resizing as Pillow does it, so that a folder read here
 * gives the pixels torchvision's PIL pipeline gives.
 *
 * Resampling follows Pillow's Resample.c (ImagingResample, 8 bits per
 * channel): for each axis the triangle (bilinear) filter of support 1,
 * widened by the scale factor when shrinking (antialiasing); coefficients
 * are normalized per output pixel, converted to 22-bit fixed point with
 * rounding, and applied horizontally first (into a uint8 intermediate of
 * the rows the vertical pass needs), then vertically, each result rounded
 * and clipped to 0..255. */
#include "qkit/data.h"

#include <errno.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

/* ---- decoding ---- */

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings (a truncated file: "Premature end of JPEG file"; corrupt data)
 * are errors: a damaged image must not be read as a gray-filled one. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_on_error(cinfo);
}

/* pix NULL: the header only (sizes and channels, no pixel decoded). */
static qk_status decode_jpeg(const char *path, FILE *f, uint8_t **pix, int *c, int *h, int *w)
{
    struct jpeg_decompress_struct ci;
    jpeg_err e;
    uint8_t *volatile out = NULL;
    ci.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_on_error;
    e.mgr.emit_message = jpeg_on_message;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&ci);
        qk_free(out);
        return qk_error(QK_ERR_FORMAT, "%s: corrupt or truncated JPEG: %s", path, e.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_stdio_src(&ci, f);
    jpeg_read_header(&ci, TRUE);
    if ((long long)ci.image_width * ci.image_height > QK_IMAGE_MAX_PIXELS) {
        unsigned iw = ci.image_width, ih = ci.image_height;
        jpeg_destroy_decompress(&ci);
        return qk_error(QK_ERR_FORMAT, "%s: a JPEG of %ux%u pixels, more than the %lld allowed", path, iw, ih,
                        QK_IMAGE_MAX_PIXELS);
    }
    ci.out_color_space = ci.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : JCS_RGB;
    if (pix)
        jpeg_start_decompress(&ci);
    else
        jpeg_calc_output_dimensions(&ci); /* what jpeg_start_decompress would set, without decoding */
    int C = ci.output_components, W = (int)ci.output_width, H = (int)ci.output_height;
    if (C != 1 && C != 3) {
        jpeg_destroy_decompress(&ci);
        return qk_error(QK_ERR_UNSUPPORTED, "%s: JPEG with %d components", path, C);
    }
    if (!pix) {
        jpeg_destroy_decompress(&ci);
        *c = C;
        *h = H;
        *w = W;
        return QK_OK;
    }
    out = qk_malloc((size_t)H * W * C);
    if (!out) {
        jpeg_destroy_decompress(&ci);
        return qk_error(QK_ERR_NOMEM, "%s: cannot allocate %dx%d pixels", path, W, H);
    }
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = out + (size_t)ci.output_scanline * W * C;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    *pix = out;
    *c = C;
    *h = H;
    *w = W;
    return QK_OK;
}

typedef struct png_err {
    char msg[256];
} png_err;

static void png_on_error(png_structp p, png_const_charp m)
{
    png_err *e = png_get_error_ptr(p);
    snprintf(e->msg, sizeof e->msg, "%s", m);
    png_longjmp(p, 1);
}

static void png_on_warning(png_structp p, png_const_charp m)
{
    (void)p;
    (void)m;
}

/* pix NULL: the header only (the chunks before the image data). */
static qk_status decode_png(const char *path, FILE *f, uint8_t **pix, int *c, int *h, int *w)
{
    png_err e = { "" };
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, png_on_error, png_on_warning);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    uint8_t *volatile out = NULL;
    png_bytep *volatile rows = NULL;
    if (!p || !info) {
        png_destroy_read_struct(p ? &p : NULL, NULL, NULL);
        return qk_error(QK_ERR_NOMEM, "%s: libpng: out of memory", path);
    }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_read_struct(&p, &info, NULL);
        qk_free(out);
        qk_free(rows);
        return qk_error(QK_ERR_FORMAT, "%s: corrupt or truncated PNG: %s", path, e.msg);
    }
    png_init_io(p, f);
    png_read_info(p, info);
    if ((long long)png_get_image_width(p, info) * png_get_image_height(p, info) > QK_IMAGE_MAX_PIXELS) {
        unsigned iw = png_get_image_width(p, info), ih = png_get_image_height(p, info);
        png_destroy_read_struct(&p, &info, NULL);
        return qk_error(QK_ERR_FORMAT, "%s: a PNG of %ux%u pixels, more than the %lld allowed", path, iw, ih,
                        QK_IMAGE_MAX_PIXELS);
    }
    int ct = png_get_color_type(p, info), bd = png_get_bit_depth(p, info);
    if (bd == 16)
        png_set_strip_16(p);
    if (ct == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(p);
    if (ct == PNG_COLOR_TYPE_GRAY && bd < 8)
        png_set_expand_gray_1_2_4_to_8(p);
    if (png_get_valid(p, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(p);
    png_set_strip_alpha(p);
    png_read_update_info(p, info);
    int C = png_get_channels(p, info);
    int W = (int)png_get_image_width(p, info), H = (int)png_get_image_height(p, info);
    if (C != 1 && C != 3)
        png_on_error(p, "unexpected channel count");
    if (!pix) {
        png_destroy_read_struct(&p, &info, NULL);
        *c = C;
        *h = H;
        *w = W;
        return QK_OK;
    }
    out = qk_malloc((size_t)H * W * C);
    rows = qk_malloc((size_t)H * sizeof *rows);
    if (!out || !rows)
        png_on_error(p, "out of memory");
    for (int y = 0; y < H; y++)
        rows[y] = out + (size_t)y * W * C;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    png_destroy_read_struct(&p, &info, NULL);
    qk_free(rows);
    *pix = out;
    *c = C;
    *h = H;
    *w = W;
    return QK_OK;
}

/* The file's type from its signature, then decode_png / decode_jpeg (pix
 * NULL: header only). */
static qk_status decode_file(const char *path, uint8_t **pix, int *c, int *h, int *w)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return qk_error(QK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8] = { 0 };
    size_t got = fread(sig, 1, 8, f);
    rewind(f);
    qk_status st;
    if (got == 8 && !png_sig_cmp(sig, 0, 8))
        st = decode_png(path, f, pix, c, h, w);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        st = decode_jpeg(path, f, pix, c, h, w);
    else
        st = qk_error(QK_ERR_FORMAT, "%s: neither a PNG nor a JPEG file%s", path, got < 8 ? " (too short)" : "");
    fclose(f);
    return st;
}

/* The conversion qk_image_decode makes from c to want_c channels: QK_OK if
 * it can (none, or gray <-> RGB). */
static qk_status check_convert(const char *path, int c, int want_c)
{
    if (want_c <= 0 || want_c == c || want_c == 1 || want_c == 3)
        return QK_OK;
    return qk_error(QK_ERR_UNSUPPORTED, "%s: cannot convert %d channels to %d", path, c, want_c);
}

qk_status qk_image_decode(const char *path, int want_c, uint8_t **pix, int *c, int *h, int *w)
{
    *pix = NULL;
    qk_status st = decode_file(path, pix, c, h, w);
    if (st != QK_OK || want_c <= 0 || want_c == *c)
        return st;
    if ((st = check_convert(path, *c, want_c)) != QK_OK) {
        qk_free(*pix);
        *pix = NULL;
        return st;
    }
    int64_t np = (int64_t)*h * *w;
    uint8_t *o = qk_malloc((size_t)(np * want_c));
    if (!o) {
        qk_free(*pix);
        *pix = NULL;
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", path);
    }
    const uint8_t *s = *pix;
    if (want_c == 3) /* L -> RGB: replicate (PIL convert("RGB")) */
        for (int64_t i = 0; i < np; i++)
            o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = s[i];
    else /* RGB -> L: ITU-R 601-2 luma in 16-bit fixed point (PIL's L24) */
        for (int64_t i = 0; i < np; i++)
            o[i] = (uint8_t)((s[3 * i] * 19595u + s[3 * i + 1] * 38470u + s[3 * i + 2] * 7471u + 0x8000u) >> 16);
    qk_free(*pix);
    *pix = o;
    *c = want_c;
    return QK_OK;
}

/* ---- resampling (Pillow's ImagingResample, bilinear, 8 bits) ---- */

#define PRECISION_BITS (32 - 8 - 2)

static double tri(double x)
{
    x = x < 0 ? -x : x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Per output pixel: bounds[2 i] = first input, bounds[2 i + 1] = count;
 * k[i * ksize + j] fixed-point coefficients. Returns ksize (0 on OOM). */
static int coeffs(int in, int out, int **boundsp, int32_t **kp)
{
    double scale = (double)in / out, fs = scale < 1.0 ? 1.0 : scale, support = 1.0 * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = qk_malloc((size_t)out * ksize * sizeof *kk);
    int *bounds = qk_malloc((size_t)out * 2 * sizeof *bounds);
    int32_t *k = qk_malloc((size_t)out * ksize * sizeof *k);
    if (!kk || !bounds || !k) {
        qk_free(kk);
        qk_free(bounds);
        qk_free(k);
        return 0;
    }
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / fs;
        int xmin = (int)(center - support + 0.5), xmax;
        if (xmin < 0)
            xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > in)
            xmax = in;
        xmax -= xmin;
        double *kr = kk + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double wv = tri((x + xmin - center + 0.5) * ss);
            kr[x] = wv;
            ww += wv;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                kr[x] /= ww;
        for (; x < ksize; x++)
            kr[x] = 0;
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    for (int64_t i = 0; i < (int64_t)out * ksize; i++)
        k[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    qk_free(kk);
    *boundsp = bounds;
    *kp = k;
    return ksize;
}

static uint8_t clip8(int32_t v)
{
    if (v >= (1 << PRECISION_BITS << 8))
        return 255;
    if (v <= 0)
        return 0;
    return (uint8_t)(v >> PRECISION_BITS);
}

qk_status qk_image_resize(const uint8_t *src, int h, int w, int c, uint8_t *dst, int oh, int ow)
{
    if (h < 1 || w < 1 || oh < 1 || ow < 1 || c < 1)
        return qk_error(QK_ERR_ARG, "resize: bad sizes %dx%d -> %dx%d", w, h, ow, oh);
    if (oh == h && ow == w) {
        memcpy(dst, src, (size_t)h * w * c);
        return QK_OK;
    }
    int *bx = NULL, *by = NULL;
    int32_t *kx = NULL, *ky = NULL;
    int ksx = 0, ksy = 0;
    uint8_t *tmp = NULL;
    qk_status st = QK_OK;
    if (ow != w && !(ksx = coeffs(w, ow, &bx, &kx)))
        goto oom;
    if (oh != h && !(ksy = coeffs(h, oh, &by, &ky)))
        goto oom;
    /* rows the vertical pass reads: [y0, y1) */
    int y0 = 0, y1 = h;
    if (oh != h) {
        y0 = by[0];
        y1 = by[2 * (oh - 1)] + by[2 * (oh - 1) + 1];
    }
    const uint8_t *mid = src; /* [h rows from y0, ow, c] */
    int mid_w = w;
    if (ow != w) {
        if (!(tmp = qk_malloc((size_t)(y1 - y0) * ow * c)))
            goto oom;
        for (int y = y0; y < y1; y++) {
            const uint8_t *row = src + (size_t)y * w * c;
            uint8_t *o = tmp + (size_t)(y - y0) * ow * c;
            for (int xx = 0; xx < ow; xx++) {
                int xmin = bx[2 * xx], xn = bx[2 * xx + 1];
                const int32_t *k = kx + (size_t)xx * ksx;
                for (int ch = 0; ch < c; ch++) {
                    int32_t ss = 1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < xn; x++)
                        ss += row[(size_t)(x + xmin) * c + ch] * k[x];
                    o[(size_t)xx * c + ch] = clip8(ss);
                }
            }
        }
        mid = tmp;
        mid_w = ow;
    } else {
        mid = src + (size_t)y0 * w * c;
    }
    if (oh != h) {
        for (int yy = 0; yy < oh; yy++) {
            int ymin = by[2 * yy] - y0, yn = by[2 * yy + 1];
            const int32_t *k = ky + (size_t)yy * ksy;
            uint8_t *o = dst + (size_t)yy * ow * c;
            for (int64_t xc = 0; xc < (int64_t)mid_w * c; xc++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < yn; y++)
                    ss += mid[(size_t)(y + ymin) * mid_w * c + xc] * k[y];
                o[xc] = clip8(ss);
            }
        }
    } else {
        memcpy(dst, mid, (size_t)oh * ow * c);
    }
    goto done;
oom:
    st = qk_error(QK_ERR_NOMEM, "resize: out of memory");
done:
    qk_free(bx);
    qk_free(by);
    qk_free(kx);
    qk_free(ky);
    qk_free(tmp);
    return st;
}

void qk_image_out_size(int h, int w, int resize, int crop, int *oh, int *ow)
{
    if (resize > 0) { /* torchvision: the shorter side to resize, the longer int(resize * long / short) */
        if (w <= h) {
            *ow = resize;
            *oh = (int)((double)resize * h / w);
        } else {
            *oh = resize;
            *ow = (int)((double)resize * w / h);
        }
        if ((w <= h ? w : h) == resize) { /* torchvision returns the image unchanged */
            *oh = h;
            *ow = w;
        }
    } else {
        *oh = h;
        *ow = w;
    }
    if (crop > 0)
        *oh = *ow = crop;
}

/* torchvision CenterCrop offset: int(round((size - crop) / 2.0)), Python's
 * round (half to even); negative (crop larger): the image is zero padded. */
static int crop_off(int size, int crop)
{
    double v = (size - crop) / 2.0;
    return (int)nearbyint(v);
}

/* The sizes qk_image_load makes of an H x W image: rh x rw after the
 * resize, oh x ow after the crop; QK_ERR_FORMAT past the pixel limits. */
static qk_status out_geometry(const char *path, const qk_data_opts *o, int H, int W, int *rh, int *rw, int *oh,
                              int *ow)
{
    int resize = o ? o->resize : 0, crop = o ? o->crop : 0;
    *rh = H;
    *rw = W;
    if (resize > 0) {
        double lo = H < W ? H : W, hi = H < W ? W : H;
        if ((double)resize * resize * (hi / lo) > (double)QK_IMAGE_MAX_PIXELS)
            return qk_error(QK_ERR_FORMAT, "%s: resizing %dx%d to a shorter side of %d gives more than %lld pixels",
                            path, W, H, resize, QK_IMAGE_MAX_PIXELS);
        qk_image_out_size(H, W, resize, 0, rh, rw);
    }
    if ((double)crop * crop > (double)QK_IMAGE_MAX_PIXELS)
        return qk_error(QK_ERR_FORMAT, "%s: a crop of %d gives more than %lld pixels", path, crop, QK_IMAGE_MAX_PIXELS);
    *oh = crop > 0 ? crop : *rh;
    *ow = crop > 0 ? crop : *rw;
    return QK_OK;
}

qk_status qk_image_probe(const char *path, const qk_data_opts *o, int *c, int *h, int *w)
{
    int C, H, W, rh, rw, want_c = o ? o->c : 0;
    qk_status st = decode_file(path, NULL, &C, &H, &W);
    if (st == QK_OK)
        st = check_convert(path, C, want_c);
    if (st == QK_OK)
        st = out_geometry(path, o, H, W, &rh, &rw, h, w);
    if (st == QK_OK)
        *c = want_c > 0 ? want_c : C;
    return st;
}

qk_status qk_image_load(const char *path, const qk_data_opts *o, uint8_t **chw, int *c, int *h, int *w)
{
    *chw = NULL;
    uint8_t *pix = NULL, *rs = NULL;
    int C, H, W, rh, rw, oh, ow;
    qk_status st = qk_image_decode(path, o ? o->c : 0, &pix, &C, &H, &W);
    if (st != QK_OK)
        return st;
    if ((st = out_geometry(path, o, H, W, &rh, &rw, &oh, &ow)) != QK_OK) {
        qk_free(pix);
        return st;
    }
    int crop = o ? o->crop : 0;
    if (rh != H || rw != W) {
        if (!(rs = qk_malloc((size_t)rh * rw * C))) {
            qk_free(pix);
            return qk_error(QK_ERR_NOMEM, "%s: out of memory", path);
        }
        if ((st = qk_image_resize(pix, H, W, C, rs, rh, rw)) != QK_OK) {
            qk_free(pix);
            qk_free(rs);
            return qk_error_context(st, "%s", path);
        }
        qk_free(pix);
        pix = rs;
    }
    int top = crop > 0 ? crop_off(rh, crop) : 0, left = crop > 0 ? crop_off(rw, crop) : 0;
    if (crop > 0 && (rh < crop || rw < crop)) { /* torchvision pads (left/top = (crop - size) // 2) then crops */
        top = rh < crop ? -((crop - rh) / 2) : top;
        left = rw < crop ? -((crop - rw) / 2) : left;
    }
    uint8_t *out = qk_malloc((size_t)C * oh * ow);
    if (!out) {
        qk_free(pix);
        return qk_error(QK_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int k = 0; k < C; k++)
        for (int y = 0; y < oh; y++) {
            int sy = y + top;
            uint8_t *d = out + ((size_t)k * oh + y) * ow;
            for (int x = 0; x < ow; x++) {
                int sx = x + left;
                d[x] = sy >= 0 && sy < rh && sx >= 0 && sx < rw ? pix[((size_t)sy * rw + sx) * C + k] : 0;
            }
        }
    qk_free(pix);
    *chw = out;
    *c = C;
    *h = oh;
    *w = ow;
    return QK_OK;
}
