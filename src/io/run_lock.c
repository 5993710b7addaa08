/* One run per run directory: rank 0 holds a write lock (fcntl) on
 * run.dir/run.lock for the run's life. The kernel drops the lock when the
 * process ends in any way, so a crashed or killed run leaves nothing stuck;
 * the file stays, holding the host and pid of the last run that held it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"
#include "fedkd/io/runlog.h"

/* Rank 0: takes the lock or says which run holds it. */
static fedkd_status lock_directory(const char *dir, int *fd_out)
{
    char path[1100];
    if (snprintf(path, sizeof path, "%s/run.lock", dir) >= (int)sizeof path)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `run.dir`: path too long");
    fedkd_status status = fedkd_make_directories(dir);
    if (status) return status;
    int fd = open(path, O_RDWR | O_CREAT, 0666);
    if (fd < 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: cannot open run.lock: %s", dir,
                          strerror(errno));
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &lock) != 0) {
        int error = errno;
        char holder[256] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        if (error == EACCES || error == EAGAIN)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "run directory %s is in use by another run (%s, in %s); wait for "
                              "it to end or choose another run.dir",
                              dir, holder[0] ? holder : "holder unknown", path);
        return FEDKD_FAIL(FEDKD_ERR_IO, "run directory %s: cannot lock run.lock: %s", dir,
                          strerror(error));
    }
    char host[128] = "unknown";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    char text[256];
    int length = snprintf(text, sizeof text, "host %s pid %ld\n", host, (long)getpid());
    /* The text is for people: a failure to write it does not stop the run. */
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)length, 0) != length)
        fedkd_log_warn("run directory %s: could not write run.lock: %s", dir, strerror(errno));
    *fd_out = fd;
    return FEDKD_OK;
}

fedkd_status fedkd_run_lock_acquire(const fedkd_config *config, MPI_Comm comm, int *fd)
{
    *fd = -1;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    fedkd_status status = FEDKD_OK;
    if (rank == 0 && config->run.dir[0]) status = lock_directory(config->run.dir, fd);
    status = fedkd_comm_agree(comm, status);
    if (status) fedkd_run_lock_release(fd);
    return status;
}

void fedkd_run_lock_release(int *fd)
{
    if (*fd >= 0) close(*fd); /* drops the lock */
    *fd = -1;
}
