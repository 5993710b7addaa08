/* Compressed uploads (compress.h). */
#include "fl/compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/core/memory.h"
#include "fl/fl_round.h"

fl_compression fl_compression_of(const fedkd_config *config)
{
    const char *name = config->comm.compression;
    if (strcmp(name, "float16") == 0) return FL_COMPRESS_FLOAT16;
    if (strcmp(name, "int8") == 0) return FL_COMPRESS_INT8;
    if (strcmp(name, "topk") == 0) return FL_COMPRESS_TOPK;
    return FL_COMPRESS_NONE;
}

size_t fl_topk_count(double fraction, size_t n)
{
    if (n == 0) return 0;
    double k = ceil(fraction * (double)n);
    if (k < 1.0) return 1;
    if (k >= (double)n) return n;
    return (size_t)k;
}

uint64_t fl_segment_bytes(fl_compression compression, double topk_fraction, fl_segment segment,
                          size_t n)
{
    uint64_t values = (uint64_t)n;
    if (segment == FL_SEGMENT_EXACT) return 4 * values;
    switch (compression) {
    case FL_COMPRESS_FLOAT16:
        return 2 * values;
    case FL_COMPRESS_INT8:
        return values + 4 * ((values + FL_INT8_CHUNK - 1) / FL_INT8_CHUNK);
    case FL_COMPRESS_TOPK:
        return segment == FL_SEGMENT_WEIGHTS ? 8 * (uint64_t)fl_topk_count(topk_fraction, n)
                                             : 4 * values;
    case FL_COMPRESS_NONE:
    default:
        return 4 * values;
    }
}

uint64_t fl_upload_bytes(const fedkd_config *config, const fl_payload *payload)
{
    fl_compression compression = fl_compression_of(config);
    double f = config->comm.topk_fraction;
    size_t weights = (size_t)payload->up_weight_segments * payload->up_weights;
    size_t exact = payload->sent_up >= weights + payload->up_soft
                       ? payload->sent_up - weights - payload->up_soft
                       : 0;
    return (uint64_t)payload->up_weight_segments *
               fl_segment_bytes(compression, f, FL_SEGMENT_WEIGHTS, payload->up_weights) +
           fl_segment_bytes(compression, f, FL_SEGMENT_SOFT, payload->up_soft) +
           fl_segment_bytes(compression, f, FL_SEGMENT_EXACT, exact);
}

size_t fl_residual_len(const fedkd_config *config, const fl_payload *payload)
{
    if (fl_compression_of(config) != FL_COMPRESS_TOPK) return 0;
    return (size_t)payload->up_weight_segments * payload->up_weights;
}

/* ---- codecs ------------------------------------------------------------------ */

uint16_t fl_float_to_half(float value)
{
    uint32_t x;
    memcpy(&x, &value, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN stays NaN */
    /* 65520 and above would round to infinity: clamped to the largest half. */
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7bffu);
    if (magnitude < 0x38800000u) {
        /* Below 2^-14: a subnormal half, units of 2^-24. */
        if (magnitude <= 0x33000000u) return sign; /* at most 2^-25: to zero (even) */
        uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(magnitude >> 23);
        uint32_t q = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = (((magnitude >> 23) - 112u) << 10) | ((magnitude >> 13) & 0x3ffu);
    uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float fl_half_to_float(uint16_t half)
{
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu, mantissa = half & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {
        float v = ldexpf((float)mantissa, -24);
        return sign ? -v : v;
    }
    if (exponent == 31) bits = sign | 0x7f800000u | (mantissa << 13);
    else bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

void fl_float16_round_trip(float *values, size_t n)
{
    for (size_t i = 0; i < n; i++) values[i] = fl_half_to_float(fl_float_to_half(values[i]));
}

void fl_int8_round_trip(float *values, size_t n)
{
    for (size_t start = 0; start < n; start += FL_INT8_CHUNK) {
        size_t end = start + FL_INT8_CHUNK < n ? start + FL_INT8_CHUNK : n;
        float largest = 0.0f;
        for (size_t i = start; i < end; i++)
            if (fabsf(values[i]) > largest) largest = fabsf(values[i]);
        float scale = largest / 127.0f;
        for (size_t i = start; i < end; i++) {
            if (!(scale > 0.0f)) {
                values[i] = 0.0f;
                continue;
            }
            long q = lrintf(values[i] / scale);
            if (q > 127) q = 127;
            if (q < -127) q = -127;
            values[i] = (float)q * scale;
        }
    }
}

static int descending(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

void fl_topk_keep(float *values, size_t n, size_t k, float *scratch)
{
    if (k >= n) return;
    for (size_t i = 0; i < n; i++) scratch[i] = fabsf(values[i]);
    qsort(scratch, n, sizeof *scratch, descending);
    float threshold = scratch[k - 1];
    /* Those above the k-th magnitude, then ties at it from the lowest index. */
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += fabsf(values[i]) > threshold;
    size_t ties = k - above;
    for (size_t i = 0; i < n; i++) {
        float m = fabsf(values[i]);
        if (m > threshold) continue;
        if (m == threshold && ties > 0) {
            ties--;
            continue;
        }
        values[i] = 0.0f;
    }
}

/* ---- uploads ------------------------------------------------------------------ */

void fl_compress_soft(const fedkd_config *config, float *values, size_t n)
{
    fl_compression compression = fl_compression_of(config);
    if (compression == FL_COMPRESS_FLOAT16) fl_float16_round_trip(values, n);
    else if (compression == FL_COMPRESS_INT8) fl_int8_round_trip(values, n);
}

fedkd_status fl_upload(const fl_run *run, fl_client_round *c, size_t at, const float *values,
                       const float *minus, size_t n, double weight, fl_segment segment,
                       size_t residual_at)
{
    fl_compression compression = fl_compression_of(run->config);
    int sparse = compression == FL_COMPRESS_TOPK;
    if (compression == FL_COMPRESS_NONE || segment == FL_SEGMENT_EXACT ||
        (sparse && segment != FL_SEGMENT_WEIGHTS))
        return minus ? fedkd_fixed_accumulate_delta(c->sum + at, values, minus, n, weight)
                     : fedkd_fixed_accumulate(c->sum + at, values, n, weight);
    if (sparse && !c->residual)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "top-k upload of client %d without a residual",
                          c->client);
    float *work = fedkd_alloc((sparse ? 2 : 1) * (n ? n : 1) * sizeof(float));
    if (!work) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory compressing %zu values", n);
    /* The difference in float, as fedkd_fixed_accumulate_delta takes it. */
    for (size_t i = 0; i < n; i++) work[i] = minus ? values[i] - minus[i] : values[i];
    if (compression == FL_COMPRESS_FLOAT16) {
        fl_float16_round_trip(work, n);
    } else if (compression == FL_COMPRESS_INT8) {
        fl_int8_round_trip(work, n);
    } else {
        /* Error feedback: send the top k of delta + residual, keep the rest. */
        float *residual = c->residual + residual_at;
        for (size_t i = 0; i < n; i++) {
            work[i] += residual[i];
            residual[i] = work[i];
        }
        fl_topk_keep(work, n, fl_topk_count(run->config->comm.topk_fraction, n), work + n);
        for (size_t i = 0; i < n; i++) residual[i] -= work[i];
    }
    fedkd_status status = fedkd_fixed_accumulate(c->sum + at, work, n, weight);
    fedkd_free(work);
    return status;
}
