/* Private to src/data: the background decoding of image folders
 * (decode.c), used by the folder loader (folder.c) and by the dataset
 * functions that free, view and wait (idx.c, batch.c). */
#ifndef QKIT_DATA_INTERNAL_H
#define QKIT_DATA_INTERNAL_H

#include "qkit/data.h"

/* Decode + convert + resize + crop one file (qk_image_load) into dst, its
 * [c, h, w] slot of a dataset's array. QK_ERR_SHAPE naming the file if it
 * does not come out c x h x w (its header said so when the folder was read;
 * the file changed since). */
qk_status qk_image_load_into(const char *path, const qk_data_opts *o, uint8_t *dst, int c, int h, int w);

/* Start decoding paths[0, n) in order into images [n, c, h, w] on nthreads
 * threads of the decoder's own (at least one is started, else
 * QK_ERR_NOMEM). The decoder takes paths (each string and the array; they
 * are released by qk_decoder_destroy, also when the start fails); images
 * stays the caller's and must outlive the decoder. Reads o->c, o->resize,
 * o->crop (copied). */
qk_status qk_decoder_start(char **paths, int64_t n, const qk_data_opts *o, uint8_t *images, int c, int h, int w,
                           int nthreads, struct qk_decoder **out);
/* Stop (threads finish the image in hand), join, release. NULL is fine. */
void qk_decoder_destroy(struct qk_decoder *d);

#endif
