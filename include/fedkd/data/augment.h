/* Augmentation of training images: a random crop of the image padded with
 * zeros on every side (zero is the channel mean once normalised), and a
 * horizontal flip with probability 1/2.
 *
 * The draws of a batch come from a counter-based stream that the caller
 * keys by (seed, FEDKD_RNG_AUGMENT, client, round and epoch) and reads in
 * the batch order of that epoch, so they depend only on the key and the
 * sample's position, never on the rank that trains the client. Every
 * sample takes the same number of draws whatever they come out as. */
#ifndef FEDKD_DATA_AUGMENT_H
#define FEDKD_DATA_AUGMENT_H

#include "fedkd/core/rng.h"
#include "fedkd/nn/nn.h"

typedef struct fedkd_augment_settings {
    int padding;  /* crop: offsets drawn in [0, 2 * padding] per axis; 0: no crop */
    int flip;     /* 1: mirror left-right with probability 1/2 */
} fedkd_augment_settings;

/* Mirrors one sample (channels, height, width) left-right, in place. */
void fedkd_augment_flip(float *sample, fedkd_shape shape);
/* The crop of the sample padded by `padding` zeros whose top-left corner
 * is (top, left) in the padded image, in place: out[y][x] =
 * in[y + top - padding][x + left - padding], 0 outside. (padding, padding)
 * and padding 0 leave the sample as it is. scratch holds one sample. */
void fedkd_augment_crop(float *sample, fedkd_shape shape, int padding, int top, int left,
                        float *scratch);
/* Augments samples[0..count) (each of `shape`) in place with draws from
 * rng, in order: top, left (when padding > 0), then the flip (when flip). */
void fedkd_augment_batch(const fedkd_augment_settings *settings, fedkd_shape shape,
                         float *samples, int count, fedkd_rng *rng, float *scratch);

#endif
