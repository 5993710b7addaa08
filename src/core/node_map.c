/* Memory the ranks of one node share: src/core/node_map.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/node_map.h"
#include "fedkd/core/core.h"

void *fedkd_node_map(MPI_Comm node, size_t bytes, int (*init)(void *map, void *context),
                     void *context, const char *what, const char *fallback, int refuse)
{
    int node_rank;
    MPI_Comm_rank(node, &node_rank);
    /* The name is unique on the host: the maker's pid, the time, a counter. */
    static unsigned serial;
    char name[64] = {0};
    int error = 0, fd = -1, created = 0;
    if (node_rank == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(name, sizeof name, "/fedkd-node-%ld-%ld-%u", (long)getpid(), (long)now.tv_nsec,
                 serial++);
        if (refuse) {
            error = EACCES;
        } else {
            fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
            created = fd >= 0;
            error = fd < 0 ? errno : posix_fallocate(fd, 0, (off_t)bytes);
        }
        if (error)
            fedkd_log_warn("%s: shared memory %s (%zu bytes): %s; %s", what, name, bytes,
                           strerror(error), fallback);
    }
    int failed = error != 0;
    MPI_Bcast(name, (int)sizeof name, MPI_CHAR, 0, node);
    MPI_Bcast(&failed, 1, MPI_INT, 0, node);
    if (!failed && node_rank != 0) {
        fd = shm_open(name, O_RDWR, 0600);
        failed = fd < 0;
    }
    void *map = MAP_FAILED;
    if (!failed) {
        map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        failed = map == MAP_FAILED;
    }
    if (fd >= 0) close(fd);
    int init_error = 0;
    if (!failed && node_rank == 0 && init) {
        init_error = init(map, context);
        failed = init_error != 0;
    }
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, node);
    /* Every rank has it mapped (or gave up): the name can go. */
    if (created) shm_unlink(name);
    if (!any_failed) return map;
    if (node_rank == 0 && init_error)
        fedkd_log_warn("%s: preparing the node's shared memory failed: %s; %s", what,
                       strerror(init_error), fallback);
    else if (node_rank == 0 && !error)
        fedkd_log_warn("%s: a rank of the node could not map its shared memory; %s", what,
                       fallback);
    if (map != MAP_FAILED) munmap(map, bytes);
    return NULL;
}
