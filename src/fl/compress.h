/* Private to src/fl: compressed uploads (comm.compression; README
 * "Simulated network, dropouts and compressed uploads").
 *
 * An upload is made of segments (fl_payload in fl_round.h says how many of
 * its sent_up floats are of each kind):
 *
 *   weights   weight deltas (and SCAFFOLD's variate change): float16, int8,
 *             or top-k with error feedback
 *   soft      logits / probabilities on the public set, per-class logits:
 *             float16 or int8 (top-k leaves them float32)
 *   exact     the rest (FedNova's step count, FD's class counts): float32
 *
 * The client compresses, the simulation decompresses at once and adds the
 * decompressed values into the exact fixed-point sum, so the aggregate is
 * exact for what was received. Bytes per upload, by formula:
 *
 *   none      4 n
 *   float16   2 n                     (IEEE half, round to nearest even,
 *                                      beyond +-65504 clamped)
 *   int8      n + 4 ceil(n / 1024)    (a float32 scale max|x| / 127 per
 *                                      chunk of FL_INT8_CHUNK values)
 *   topk      8 k, k = ceil(f n)      (a float32 value and a uint32 index
 *                                      each; f = comm.topk_fraction)
 *
 * Top-k keeps, per client, the error residual r (client state, so
 * checkpointed): it sends the k entries of largest magnitude of d = delta +
 * r (ties to the lower index) and keeps r = d - sent. With k = n nothing is
 * left out and the aggregate is FedAvg's, bit for bit. The downlink is not
 * compressed. */
#ifndef FEDKD_FL_COMPRESS_H
#define FEDKD_FL_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/config/config.h"
#include "fedkd/core/status.h"

struct fl_payload;
struct fl_run;
struct fl_client_round;

enum { FL_INT8_CHUNK = 1024 };

typedef enum fl_compression {
    FL_COMPRESS_NONE,
    FL_COMPRESS_FLOAT16,
    FL_COMPRESS_INT8,
    FL_COMPRESS_TOPK
} fl_compression;

typedef enum fl_segment { FL_SEGMENT_WEIGHTS, FL_SEGMENT_SOFT, FL_SEGMENT_EXACT } fl_segment;

fl_compression fl_compression_of(const fedkd_config *config);
/* Values top-k sends of n: ceil(fraction * n), at least 1 (n > 0). */
size_t fl_topk_count(double fraction, size_t n);
/* Bytes of n values of a segment kind on the wire. */
uint64_t fl_segment_bytes(fl_compression compression, double topk_fraction, fl_segment segment,
                          size_t n);
/* One participant's upload in bytes: its segments after compression. */
uint64_t fl_upload_bytes(const fedkd_config *config, const struct fl_payload *payload);
/* Floats of error residual a client keeps (top-k of an algorithm with
 * weight segments), else 0. */
size_t fl_residual_len(const fedkd_config *config, const struct fl_payload *payload);

/* Codecs, each a round trip (what the server decodes). */
uint16_t fl_float_to_half(float value);
float fl_half_to_float(uint16_t half);
void fl_float16_round_trip(float *values, size_t n);
void fl_int8_round_trip(float *values, size_t n);
/* Keeps the k largest-magnitude entries of values (ties: lower index),
 * zeroes the others; scratch holds n floats. */
void fl_topk_keep(float *values, size_t n, size_t k, float *scratch);

/* Soft labels as the server decodes them (float16, int8; else unchanged). */
void fl_compress_soft(const fedkd_config *config, float *values, size_t n);

/* A client's upload of a segment of n values into c->sum + at:
 * weight * (values - minus) (minus may be NULL), compressed as the config
 * says. With no compression (or an exact segment) this is
 * fedkd_fixed_accumulate(_delta) itself. Top-k reads and updates the
 * client's residual at c->residual + residual_at. */
fedkd_status fl_upload(const struct fl_run *run, struct fl_client_round *c, size_t at,
                       const float *values, const float *minus, size_t n, double weight,
                       fl_segment segment, size_t residual_at);

#endif
