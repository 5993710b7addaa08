/* Grid-search sweeps (include/fedkd/experiments/sweep.h): the MPI
 * orchestration of a grid's points (the grid file is read in sweep_grid.c).
 *
 * The world is split into groups of group_size consecutive ranks; each
 * group is one federation whose rank 0 (the group leader) takes the next
 * point from a counter on world rank 0 (an MPI window, fetch-and-add with a
 * request waited for by fedkd_comm_wait, so that an idle leader yields its core) and
 * broadcasts it to its group. Points therefore go to whichever group is free,
 * which matters when points differ in cost (rounds, models, partitions). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "experiments/experiments_private.h"
#include "experiments/sweep_private.h"

/* ---- running ------------------------------------------------------------------ */

enum { COMMAND_STOP = -1, COMMAND_INTERRUPTED = -2 };
enum { COUNTER_NEXT = 0, COUNTER_FINISHED = 1, NUM_COUNTERS = 2 };
enum { MESSAGE_BYTES = 512 };

typedef struct sweep_run {
    fedkd_sweep_grid *grid;
    MPI_Comm world, group;
    int world_rank, world_size;
    int group_rank, group_index, num_groups;
    int *todo;                  /* (num_points) points to run, ascending */
    int num_todo;
    MPI_Win window;             /* world rank 0 holds NUM_COUNTERS int64 */
    int64_t *counters;
} sweep_run;

/* fedkd_log_info speaks on log rank 0 only. With several groups their
 * per-round lines would interleave, so during a point no rank is log rank 0
 * (the user's --quiet stays as it was), and each leader speaks its own point
 * lines as log rank 0. The library prints no warnings or errors meanwhile,
 * so the borrowed rank numbers never show; the world's numbering returns
 * between these moments. */
enum log_role { LOG_AS_WORLD, LOG_MUTED, LOG_SPEAKING };

static void log_role(const sweep_run *s, enum log_role role)
{
    int rank = s->world_rank;
    if (role == LOG_SPEAKING) rank = 0;
    else if (role == LOG_MUTED && rank == 0) rank = s->world_size;
    fedkd_log_set_rank(rank, s->world_size);
}

static fedkd_status counter_fetch_add(const sweep_run *s, int which, int64_t *value)
{
    int64_t one = 1;
    MPI_Request request;
    if (MPI_Rget_accumulate(&one, 1, MPI_INT64_T, value, 1, MPI_INT64_T, 0, (MPI_Aint)which, 1,
                            MPI_INT64_T, MPI_SUM, s->window, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Rget_accumulate on the sweep's counter failed");
    return fedkd_comm_wait(&request, "the sweep's point counter");
}

/* The federation's outcome when a point ran but wrote no summary.json. */
static cJSON *summary_from_result(const fedkd_run_result *r)
{
    cJSON *summary = cJSON_CreateObject();
    if (!summary) return NULL;
    char checksum[32];
    snprintf(checksum, sizeof checksum, "%016llx", (unsigned long long)r->params_checksum);
    cJSON_AddNumberToObject(summary, "rounds_run", r->rounds_run);
    cJSON_AddNumberToObject(summary, "final_accuracy", r->final_accuracy);
    cJSON_AddNumberToObject(summary, "best_accuracy", r->best_accuracy);
    if (r->rounds_to_target > 0) {
        cJSON_AddNumberToObject(summary, "rounds_to_target", r->rounds_to_target);
        cJSON_AddNumberToObject(summary, "bytes_to_target", (double)r->bytes_to_target);
    } else {
        cJSON_AddNullToObject(summary, "rounds_to_target");
        cJSON_AddNullToObject(summary, "bytes_to_target");
    }
    cJSON_AddNumberToObject(summary, "bytes_down_total", (double)r->bytes_down_total);
    cJSON_AddNumberToObject(summary, "bytes_up_total", (double)r->bytes_up_total);
    cJSON_AddNumberToObject(summary, "wire_bytes_total", (double)r->wire_bytes_total);
    cJSON_AddNumberToObject(summary, "wall_seconds", r->wall_seconds);
    cJSON_AddNumberToObject(summary, "num_params", (double)r->num_params);
    cJSON_AddStringToObject(summary, "params_checksum", checksum);
    return summary;
}

static void describe_point(const fedkd_sweep_grid *g, int point, char *out, size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; k < g->num_keys && used + 1 < out_size; k++) {
        const cJSON *value = fedkd_sweep_point_value(g, point, k);
        char *json = cJSON_IsString(value) ? NULL : cJSON_PrintUnformatted(value);
        int n = snprintf(out + used, out_size - used, "%s%s=%.40s", k ? " " : "", g->keys[k],
                         json ? json : value->valuestring);
        free(json);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* A completed point's figures for the progress line: the mean KD gain of
 * each method for a kd-study point (it has no final accuracy), with the
 * number of its runs that diverged; the final and best test accuracy
 * otherwise. */
static void describe_outcome(const cJSON *summary, const fedkd_run_result *result, char *out,
                             size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    const cJSON *methods = cJSON_GetObjectItemCaseSensitive(summary, "kd");
    if (!cJSON_IsObject(methods)) methods = NULL;
    const cJSON *method;
    cJSON_ArrayForEach(method, methods)
    {
        const cJSON *gain = cJSON_GetObjectItemCaseSensitive(method, "gain_mean");
        const cJSON *diverged = cJSON_GetObjectItemCaseSensitive(method, "diverged");
        int lost = cJSON_IsNumber(diverged) ? diverged->valueint : 0;
        if (cJSON_IsNumber(gain))
            used = fedkd_appendf(out, out_size, used, "%s%s gain %+.4f", used ? ", " : "",
                                 method->string, gain->valuedouble);
        else if (lost)
            used = fedkd_appendf(out, out_size, used, "%s%s", used ? ", " : "", method->string);
        if (lost) used = fedkd_appendf(out, out_size, used, " (%d diverged)", lost);
    }
    if (!used)
        fedkd_appendf(out, out_size, used, "final accuracy %.4f (best %.4f)",
                      result->final_accuracy, result->best_accuracy);
}

/* The leader's part after a point: the row, the tables, one line. */
static fedkd_status record_point(const sweep_run *s, int point, fedkd_status outcome,
                                 const char *message, const fedkd_run_result *result)
{
    const fedkd_sweep_grid *g = s->grid;
    cJSON *summary = outcome ? NULL : sweep_read_summary(g, point);
    if (!outcome && !summary) summary = summary_from_result(result);
    cJSON *row = sweep_row_create(g, point, outcome ? "failed" : "completed", message, summary);
    if (!row) {
        cJSON_Delete(summary);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory recording point %d", point);
    }
    fedkd_status status = sweep_row_write(g, point, row);
    cJSON_Delete(row);
    if (!status) status = sweep_tables_write(g, NULL, NULL);
    int64_t finished = 0;
    if (!status) status = counter_fetch_add(s, COUNTER_FINISHED, &finished);
    if (status) {
        cJSON_Delete(summary);
        return status;
    }

    char values[256], figures[256];
    describe_point(g, point, values, sizeof values);
    if (!outcome) describe_outcome(summary, result, figures, sizeof figures);
    cJSON_Delete(summary);
    log_role(s, LOG_SPEAKING);
    if (outcome)
        fedkd_log_info("[%lld/%d] point-%04d %s: failed: %s", (long long)finished + 1,
                       s->num_todo, point, values, message);
    else
        fedkd_log_info("[%lld/%d] point-%04d %s: %s, %.1fs", (long long)finished + 1,
                       s->num_todo, point, values, figures, result->wall_seconds);
    log_role(s, LOG_AS_WORLD);
    return FEDKD_OK;
}

/* What a group's ranks say about a point, decided on every rank alike. The
 * server (group rank 0) decides an interruption, since clients that were
 * merely told to stop report one too; otherwise the lowest rank that failed
 * for a reason of its own (preferably one with a message) names the
 * failure, and that rank sends its message to the others. */
typedef struct point_outcome {
    int code;
    char message[MESSAGE_BYTES];
} point_outcome;

static fedkd_status agree_outcome(const sweep_run *s, fedkd_status local, point_outcome *out)
{
    enum { WITH_MESSAGE, OWN_FAILURE, ANY_FAILURE, MPI_FAILURE, NUM_KEYS };
    point_outcome mine = {(int)local, ""};
    if (local) snprintf(mine.message, sizeof mine.message, "%s", fedkd_error_message());
    fedkd_error_clear();
    int own = local != FEDKD_OK && local != FEDKD_ERR_INTERRUPTED;
    int keys[NUM_KEYS] = {own && mine.message[0] ? s->group_rank : INT_MAX,
                          own ? s->group_rank : INT_MAX, local ? s->group_rank : INT_MAX,
                          local == FEDKD_ERR_MPI ? -1 : 0};
    int lowest[NUM_KEYS];
    MPI_Request request;
    if (MPI_Iallreduce(keys, lowest, NUM_KEYS, MPI_INT, MPI_MIN, s->group, &request) !=
            MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the agreement on a point's outcome"))
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while agreeing on a point's outcome");
    int chosen = lowest[WITH_MESSAGE];
    if (chosen == INT_MAX) chosen = lowest[OWN_FAILURE];
    if (chosen == INT_MAX) chosen = lowest[ANY_FAILURE];
    *out = (point_outcome){FEDKD_OK, ""};
    if (chosen != INT_MAX) {
        if (s->group_rank == chosen) *out = mine;
        if (MPI_Ibcast(out, (int)sizeof *out, MPI_BYTE, chosen, s->group, &request) !=
                MPI_SUCCESS ||
            fedkd_comm_wait(&request, "the broadcast of a point's failure"))
            return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while agreeing on a point's outcome");
        out->message[sizeof out->message - 1] = '\0';
        if (!out->message[0])
            snprintf(out->message, sizeof out->message, "%s",
                     fedkd_status_name((fedkd_status)out->code));
        if (chosen > 0) {
            char prefix[32];
            size_t n = (size_t)snprintf(prefix, sizeof prefix, "[group rank %d] ", chosen);
            size_t length = strlen(out->message);
            if (length > sizeof out->message - 1 - n) length = sizeof out->message - 1 - n;
            memmove(out->message + n, out->message, length);
            memcpy(out->message, prefix, n);
            out->message[n + length] = '\0';
        }
    }
    if (lowest[MPI_FAILURE] < 0) out->code = FEDKD_ERR_MPI;
    /* The server's own word on an interruption; everyone heard it at the
     * last round header. */
    int server_interrupted = s->group_rank == 0 && local == FEDKD_ERR_INTERRUPTED;
    if (MPI_Ibcast(&server_interrupted, 1, MPI_INT, 0, s->group, &request) != MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the broadcast of a point's outcome"))
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while agreeing on a point's outcome");
    if (server_interrupted) out->code = FEDKD_ERR_INTERRUPTED;
    return FEDKD_OK;
}

/* Every rank of the group. Returns FEDKD_OK when the point was recorded
 * (completed or failed); a status that must stop the sweep otherwise. */
static fedkd_status run_point(const sweep_run *s, int point)
{
    const fedkd_sweep_grid *g = s->grid;
    fedkd_config config;
    fedkd_run_result result;
    memset(&result, 0, sizeof result);
    fedkd_status local = fedkd_sweep_point_config(g, point, &config);
    local = fedkd_comm_agree(s->group, local);
    if (!local) {
        if (s->num_groups > 1) log_role(s, LOG_MUTED);
        /* A point's directory is the sweep's own: a point run again
         * (failed or interrupted before) starts over. */
        fedkd_run_options options = {.start_over = 1};
        local = fedkd_run_with_options(&config, s->group, &options, &result);
        log_role(s, LOG_AS_WORLD);
    }
    fedkd_config_free(&config);
    point_outcome outcome;
    fedkd_status status = agree_outcome(s, local, &outcome);
    if (!status && (outcome.code == FEDKD_ERR_INTERRUPTED || outcome.code == FEDKD_ERR_MPI))
        status = (fedkd_status)outcome.code;
    if (!status && s->group_rank == 0)
        status = record_point(s, point, (fedkd_status)outcome.code, outcome.message, &result);
    free(result.final_params);
    return status;
}

/* Each group takes points until none is left or something stops it. */
static fedkd_status run_points(sweep_run *s)
{
    fedkd_status local = FEDKD_OK;
    for (;;) {
        int command = COMMAND_STOP;
        if (s->group_rank == 0) {
            if (!local && !fedkd_stop_requested) {
                int64_t next = 0;
                local = counter_fetch_add(s, COUNTER_NEXT, &next);
                if (!local && next < s->num_todo) command = s->todo[next];
            }
            if (!local && fedkd_stop_requested) command = COMMAND_INTERRUPTED;
        }
        MPI_Request request;
        if (MPI_Ibcast(&command, 1, MPI_INT, 0, s->group, &request) != MPI_SUCCESS)
            return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ibcast of the next sweep point failed");
        fedkd_status status = fedkd_comm_wait(&request, "the broadcast of the next sweep point");
        if (status) return status;
        if (command == COMMAND_STOP) return local;
        if (command == COMMAND_INTERRUPTED) return FEDKD_ERR_INTERRUPTED;
        status = run_point(s, command);
        /* The leader stops the group at the next command; the others learn
         * it from that broadcast. */
        if (status && !local) local = status;
    }
}

static fedkd_status share_plan(sweep_run *s, fedkd_status status)
{
    int header[2] = {(int)status, s->num_todo};
    MPI_Request request;
    if (MPI_Ibcast(header, 2, MPI_INT, 0, s->world, &request) != MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the broadcast of the sweep plan"))
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while sharing the sweep plan");
    if (header[0]) {
        if (s->world_rank != 0) fedkd_error_clear();
        return (fedkd_status)header[0];
    }
    s->num_todo = header[1];
    if (MPI_Ibcast(s->todo, s->num_todo, MPI_INT, 0, s->world, &request) != MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the broadcast of the sweep plan"))
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while sharing the sweep plan");
    return FEDKD_OK;
}

static fedkd_status open_counters(sweep_run *s)
{
    MPI_Aint bytes = s->world_rank == 0 ? NUM_COUNTERS * (MPI_Aint)sizeof(int64_t) : 0;
    if (MPI_Win_allocate(bytes, (int)sizeof(int64_t), MPI_INFO_NULL, s->world, &s->counters,
                         &s->window) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Win_allocate of the sweep's counters failed");
    /* One passive epoch for the whole sweep; rank 0 zeroes its counters and
     * publishes them before anyone reads. */
    if (MPI_Win_lock_all(0, s->window) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Win_lock_all on the sweep's counters failed");
    if (s->world_rank == 0) {
        for (int i = 0; i < NUM_COUNTERS; i++) s->counters[i] = 0;
        MPI_Win_sync(s->window);
    }
    MPI_Request request;
    if (MPI_Ibarrier(s->world, &request) != MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the barrier before the sweep"))
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while starting the sweep");
    return FEDKD_OK;
}

/* Rank 0, at the end: the final tables and the sweep's verdict. */
static fedkd_status conclude(const sweep_run *s, fedkd_status status)
{
    const fedkd_sweep_grid *g = s->grid;
    int completed = 0, failed = 0;
    fedkd_status written = sweep_tables_write(g, &completed, &failed);
    if (status == FEDKD_ERR_INTERRUPTED) {
        fedkd_error_clear();
        return FEDKD_FAIL(FEDKD_ERR_INTERRUPTED,
                          "sweep interrupted: %d of %d points completed, results in %s; run "
                          "the same command again to continue (completed points are skipped)",
                          completed, g->num_points, g->output);
    }
    if (status) return status;
    if (written) return written;
    if (failed)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "sweep: %d of %d points failed; their rows in %s/results.csv say "
                          "why, and running the same command again retries them",
                          failed, g->num_points, g->output);
    fedkd_log_info("sweep: %d of %d points completed; results in %s/results.csv and "
                   "results.json", completed, g->num_points, g->output);
    return FEDKD_OK;
}

fedkd_status fedkd_sweep_run(const char *grid_path, const char *const *overrides,
                             int num_overrides, MPI_Comm world)
{
    sweep_run run = {0};
    sweep_run *s = &run;
    s->world = world;
    s->group = MPI_COMM_NULL;
    s->window = MPI_WIN_NULL;
    MPI_Comm_rank(world, &s->world_rank);
    MPI_Comm_size(world, &s->world_size);

    fedkd_status status =
        fedkd_sweep_grid_load(&s->grid, grid_path, overrides, num_overrides, s->world_size);
    status = fedkd_comm_agree(world, status);
    if (status) goto done;
    const fedkd_sweep_grid *g = s->grid;
    s->todo = malloc((size_t)g->num_points * sizeof *s->todo);
    if (!s->todo) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the sweep plan");
    status = fedkd_comm_agree(world, status);
    if (status) goto done;
    if (s->world_rank == 0) status = sweep_prepare_output(g, s->todo, &s->num_todo);
    status = share_plan(s, status);
    if (status) goto done;

    s->num_groups = s->world_size / g->group_size;
    s->group_index = s->world_rank / g->group_size;
    if (MPI_Comm_split(world, s->group_index, s->world_rank, &s->group) != MPI_SUCCESS) {
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Comm_split into sweep groups failed");
        goto done;
    }
    MPI_Comm_rank(s->group, &s->group_rank);
    status = open_counters(s);
    if (status) goto done;
    if (s->world_rank == 0)
        fedkd_log_info("sweep: %d points, %d to run, on %d group(s) of %d process(es); "
                       "output %s", g->num_points, s->num_todo, s->num_groups, g->group_size,
                       g->output);

    fedkd_status local = run_points(s);
    /* Wait for every group without spinning: a finished group must not
     * steal the cores of those still training. */
    MPI_Request request;
    if (MPI_Ibarrier(world, &request) != MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the barrier after the sweep"))
        local = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while ending the sweep");
    status = fedkd_comm_agree(world, local);
    if (status == FEDKD_ERR_INTERRUPTED && s->world_rank != 0) fedkd_error_clear();

    int verdict = (int)status;
    if (s->world_rank == 0) verdict = (int)conclude(s, status);
    if (MPI_Ibcast(&verdict, 1, MPI_INT, 0, world, &request) != MPI_SUCCESS ||
        fedkd_comm_wait(&request, "the broadcast of the sweep's outcome"))
        verdict = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed while ending the sweep");
    if (s->world_rank != 0 && verdict != (int)status) fedkd_error_clear();
    status = (fedkd_status)verdict;

done:
    if (s->window != MPI_WIN_NULL) {
        MPI_Win_unlock_all(s->window);
        MPI_Win_free(&s->window);
    }
    if (s->group != MPI_COMM_NULL) MPI_Comm_free(&s->group);
    log_role(s, LOG_AS_WORLD);
    free(s->todo);
    fedkd_sweep_grid_destroy(&s->grid);
    return status;
}
