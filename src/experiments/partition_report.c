/* `fedkd-sim partition`: the partition a run would use, without training. */
#include <stdio.h>
#include <string.h>

#include "fedkd/data/clientset.h"
#include "fedkd/core/core.h"
#include "fedkd/data/partition.h"
#include "experiments/experiments_private.h"

fedkd_status fedkd_partition_report(const fedkd_config *config, MPI_Comm comm)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    fedkd_status status = FEDKD_OK;
    if (rank == 0) {
        fedkd_client_set set;
        status = fedkd_client_set_load(config, NULL, 0, fedkd_mode_data_flags(config), &set);
        const fedkd_partition *p = set.partition;
        if (!status) {
            printf("partition %s of %zu samples (%s) into %d clients; %zu dropped", p->scheme,
                   p->total, config->data.name, p->num_clients, p->dropped);
            if (set.public_count)
                printf("; %zu held out as the public set", set.public_count);
            printf("\n");
            printf("%6s %7s", "client", "size");
            for (int k = 0; k < p->num_classes; k++) printf(" %6d", k);
            printf("\n");
            for (int c = 0; c < p->num_clients; c++) {
                printf("%6d %7zu", c, fedkd_partition_client_size(p, c));
                for (int k = 0; k < p->num_classes; k++)
                    printf(" %6u", p->histograms[(size_t)c * (size_t)p->num_classes + (size_t)k]);
                if (p->noise_sigma[c] > 0.0) printf("  noise %.3f", p->noise_sigma[c]);
                printf("\n");
            }
            fflush(stdout);
        }
        fedkd_client_set_free(&set);
    }
    int code = (int)status, agreed = 0;
    MPI_Request request;
    MPI_Iallreduce(&code, &agreed, 1, MPI_INT, MPI_MAX, comm, &request);
    fedkd_status waited = fedkd_comm_wait(&request, "the partition report");
    if (status) return status;
    return waited ? waited : (fedkd_status)agreed;
}
