/* Memory checked before it is spent (include/fedkd/core/memory.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"
#include "fedkd/core/memory.h"

enum { ACCOUNT_CHARS = 160, SOURCE_CHARS = 64 };

void fedkd_memory_format(double bytes, char *out, size_t out_size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 5) {
        bytes /= 1024.0;
        u++;
    }
    snprintf(out, out_size, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
}

/* The first number in a file ("max" and unreadable files give -1). */
static double read_number(const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file) return -1.0;
    char text[64] = "";
    double value = -1.0;
    if (fgets(text, sizeof text, file) && strncmp(text, "max", 3) != 0) {
        char *end = NULL;
        double parsed = strtod(text, &end);
        if (end != text && parsed >= 0.0) value = parsed;
    }
    fclose(file);
    return value;
}

static double meminfo_available(void)
{
    FILE *file = fopen("/proc/meminfo", "r");
    if (!file) return -1.0;
    char line[256];
    double kib = -1.0;
    while (fgets(line, sizeof line, file))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
    fclose(file);
    return kib >= 0.0 ? kib * 1024.0 : -1.0;
}

/* Room left under the process's cgroup limit, or -1 without a limit. */
static double cgroup_room(const char **which)
{
    FILE *file = fopen("/proc/self/cgroup", "r");
    char path[512] = "", line[512];
    int v2 = 0;
    while (file && fgets(line, sizeof line, file)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "0::", 3) == 0) {
            snprintf(path, sizeof path, "%s", line + 3);
            v2 = 1;
        } else if (!v2 && strstr(line, ":memory:")) {
            snprintf(path, sizeof path, "%s", strstr(line, ":memory:") + 8);
        }
    }
    if (file) fclose(file);
    char limit_path[700], usage_path[700];
    if (v2) {
        snprintf(limit_path, sizeof limit_path, "/sys/fs/cgroup%s/memory.max", path);
        snprintf(usage_path, sizeof usage_path, "/sys/fs/cgroup%s/memory.current", path);
        *which = "cgroup memory.max";
    } else {
        snprintf(limit_path, sizeof limit_path, "/sys/fs/cgroup/memory%s/memory.limit_in_bytes",
                 path);
        snprintf(usage_path, sizeof usage_path, "/sys/fs/cgroup/memory%s/memory.usage_in_bytes",
                 path);
        *which = "cgroup memory.limit_in_bytes";
    }
    double limit = read_number(limit_path);
    /* cgroup v1 says "no limit" with a number near 2^63. */
    if (limit < 0.0 || limit > 1e18) return -1.0;
    double usage = read_number(usage_path);
    return limit - (usage > 0.0 ? usage : 0.0);
}

static double slurm_megabytes(const char *name)
{
    const char *text = getenv(name);
    if (!text || !text[0]) return -1.0;
    char *end = NULL;
    double value = strtod(text, &end);
    return end != text && value > 0.0 ? value * 1024.0 * 1024.0 : -1.0;
}

double fedkd_memory_available(int ranks_on_node, char *source, size_t source_size)
{
    double best = -1.0;
    const char *best_source = "none";
#define CONSIDER(value, name)                                  \
    do {                                                       \
        double v_ = (value);                                   \
        if (v_ >= 0.0 && (best < 0.0 || v_ < best)) {          \
            best = v_;                                         \
            best_source = (name);                              \
        }                                                      \
    } while (0)
    CONSIDER(meminfo_available(), "MemAvailable");
    const char *cgroup_name = "cgroup";
    double room = cgroup_room(&cgroup_name);
    CONSIDER(room, cgroup_name);
    CONSIDER(slurm_megabytes("SLURM_MEM_PER_NODE"), "SLURM_MEM_PER_NODE");
    double per_cpu = slurm_megabytes("SLURM_MEM_PER_CPU");
    if (per_cpu > 0.0) {
        const char *cpus = getenv("SLURM_CPUS_ON_NODE");
        int count = cpus && atoi(cpus) > 0 ? atoi(cpus) : ranks_on_node;
        CONSIDER(per_cpu * count, "SLURM_MEM_PER_CPU");
    }
#undef CONSIDER
    snprintf(source, source_size, "%s", best_source);
    return best;
}

fedkd_status fedkd_memory_check(MPI_Comm comm, double needed_bytes, double node_shared_bytes,
                                const char *account, int report)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    MPI_Comm node;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return fedkd_comm_agree(comm, FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Comm_split_type failed"));
    int node_rank = 0, node_size = 1;
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &node_size);
    /* What the node's ranks share is the first rank's to count, once. */
    char shared_note[64] = "";
    if (node_rank == 0 && node_size > 1 && node_shared_bytes > 0.0) {
        needed_bytes += node_shared_bytes;
        char shared[32];
        fedkd_memory_format(node_shared_bytes, shared, sizeof shared);
        snprintf(shared_note, sizeof shared_note, ", shared by the node %s", shared);
    }
    /* {node's sum, node's limit}: the node's first rank reads the limit. */
    double sum = 0.0, limit = -1.0;
    char source[SOURCE_CHARS] = "";
    MPI_Request request;
    fedkd_status status = FEDKD_OK;
    if (MPI_Iallreduce(&needed_bytes, &sum, 1, MPI_DOUBLE, MPI_SUM, node, &request) != MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Iallreduce failed summing memory estimates");
    if (!status) status = fedkd_comm_wait(&request, "the memory estimates' sum");
    if (!status && node_rank == 0) limit = fedkd_memory_available(node_size, source, sizeof source);
    if (!status && MPI_Bcast(&limit, 1, MPI_DOUBLE, 0, node) != MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Bcast failed sharing the node's memory limit");
    if (!status && MPI_Bcast(source, SOURCE_CHARS, MPI_CHAR, 0, node) != MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Bcast failed sharing the node's memory limit");
    MPI_Comm_free(&node);

    char text[ACCOUNT_CHARS + 256];
    char need[32], total[32], room[32];
    fedkd_memory_format(needed_bytes, need, sizeof need);
    fedkd_memory_format(sum, total, sizeof total);
    fedkd_memory_format(limit, room, sizeof room);
    snprintf(text, sizeof text, "rank %d: %s (%.*s%s); node %s of %s (%s)", rank, need,
             ACCOUNT_CHARS - 1, account, shared_note, total, limit >= 0.0 ? room : "unknown",
             limit >= 0.0 ? source : "no limit read");
    if (report) {
        /* Every rank's line, in rank order, printed by rank 0. */
        char *all = rank == 0 ? malloc((size_t)size * sizeof text) : NULL;
        if (rank == 0 && !all) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the report");
        if (MPI_Gather(text, (int)sizeof text, MPI_CHAR, all, (int)sizeof text, MPI_CHAR, 0, comm) !=
                MPI_SUCCESS &&
            !status)
            status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Gather of the memory estimates failed");
        if (rank == 0 && all) {
            printf("memory estimate per rank (dry run; nothing was trained):\n");
            for (int r = 0; r < size; r++) printf("  %s\n", all + (size_t)r * sizeof text);
            fflush(stdout);
        }
        free(all);
    }
    /* The node's ranks all see the same sum and limit: its lowest rank
     * (node_rank 0 reads the limit) speaks; fedkd_comm_agree keeps the
     * lowest failing rank's message. */
    if (!status && limit >= 0.0 && sum > limit)
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM,
                            "not enough memory: rank %d needs about %s (%s%s); the %d rank(s) on "
                            "its node need %s, but %s allows %s; use a smaller model or batch, "
                            "fewer ranks per node, or more memory",
                            rank, need, account, shared_note, node_size, total, source, room);
    return fedkd_comm_agree(comm, status);
}
