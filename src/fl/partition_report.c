/* `fedkd-sim partition`: the partition a run would use, without training. */
#include <stdio.h>
#include <string.h>

#include "fedkd/core.h"
#include "fedkd/partition.h"
#include "fl_private.h"

fedkd_status fedkd_partition_report(const fedkd_config *config, MPI_Comm comm)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    fedkd_status status = FEDKD_OK;
    if (rank == 0) {
        const fedkd_source *source = NULL;
        fedkd_source_info info = {0};
        fedkd_partition *p = NULL;
        status = fedkd_source_find(config->data.name, &source);
        if (!status) status = source->describe(config, &info);
        if (!status) {
            fedkd_partition_settings ps = fl_partition_settings(config);
            status = fedkd_partition_create(&p, &ps, info.train_labels, info.train_count,
                                            info.num_classes);
        }
        if (!status) {
            printf("partition %s of %zu samples (%s) into %d clients; %zu dropped\n",
                   p->scheme, p->total, config->data.name, p->num_clients, p->dropped);
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
        fedkd_partition_destroy(&p);
        fedkd_source_info_clear(&info);
    }
    int code = (int)status, agreed = 0;
    MPI_Request request;
    MPI_Iallreduce(&code, &agreed, 1, MPI_INT, MPI_MAX, comm, &request);
    fedkd_status waited = fl_wait(&request, "the partition report");
    if (status) return status;
    return waited ? waited : (fedkd_status)agreed;
}
