/* A dataset copy in pages of its own whose reading can be switched off.
 *
 * The kd-study keeps the test set sealed while students distil and tuned
 * KD searches its grid, so "tuning never reads the test set" is enforced by
 * the hardware in every run rather than assumed: a stray read faults. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "experiments/experiments_private.h"

static size_t round_up(size_t bytes, size_t page)
{
    return (bytes + page - 1) / page * page;
}

fedkd_status kd_sealed_create(kd_sealed *sealed, const fedkd_dataset *source)
{
    memset(sealed, 0, sizeof *sealed);
    long page_size = sysconf(_SC_PAGESIZE);
    size_t page = page_size > 0 ? (size_t)page_size : 4096;
    size_t feature_bytes = source->count * fedkd_dataset_sample_floats(source) * sizeof(float);
    size_t label_bytes = source->count * sizeof(int32_t);
    size_t features_span = round_up(feature_bytes ? feature_bytes : 1, page);
    size_t total = features_span + round_up(label_bytes ? label_bytes : 1, page);
    void *region = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot map %zu bytes for a sealed copy: %s",
                          source->origin, total, strerror(errno));
    sealed->region = region;
    sealed->region_bytes = total;
    sealed->view = *source;
    sealed->view.features = region;
    sealed->view.labels = (int32_t *)(void *)((char *)region + features_span);
    if (feature_bytes) memcpy(sealed->view.features, source->features, feature_bytes);
    if (label_bytes) memcpy(sealed->view.labels, source->labels, label_bytes);
    return kd_sealed_unlock(sealed);
}

static fedkd_status protect(kd_sealed *sealed, int protection, const char *what)
{
    if (mprotect(sealed->region, sealed->region_bytes, protection) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot %s the sealed copy: %s", sealed->view.origin,
                          what, strerror(errno));
    return FEDKD_OK;
}

fedkd_status kd_sealed_lock(kd_sealed *sealed)
{
    return protect(sealed, PROT_NONE, "seal");
}

fedkd_status kd_sealed_unlock(kd_sealed *sealed)
{
    return protect(sealed, PROT_READ, "unseal");
}

void kd_sealed_destroy(kd_sealed *sealed)
{
    if (sealed->region) munmap(sealed->region, sealed->region_bytes);
    memset(sealed, 0, sizeof *sealed);
}
