/* C tests of the rwal ABI: run from `make c-test`, linked dynamically and statically, under
 * valgrind. Usage: test_basic DIR (an empty scratch directory). */
#define _POSIX_C_SOURCE 200809L /* fork, waitpid, _exit under -std=c11 */
#include "check.h"
#include "rwal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int messages = 0;

static void on_log(rwal_log_level level, const char *message, void *userdata) {
    (void)level;
    CHECK(message != NULL && strlen(message) > 0);
    CHECK(userdata == &messages);
    messages++;
}

/* A callback that calls into rwal: it opens a log (whose messages are dropped rather than
 * deadlocking on the callback's lock) and then removes itself (applied when it returns). */
static int reentrant_calls = 0;
static const char *reentrant_dir = NULL;
static rwal_options *small_segments = NULL;

static void on_log_reentrant(rwal_log_level level, const char *message, void *userdata) {
    (void)level;
    (void)message;
    (void)userdata;
    reentrant_calls++;
    rwal_log *inner = NULL;
    CHECK_STATUS(rwal_open(reentrant_dir, small_segments, &inner), RWAL_OK);
    CHECK_STATUS(rwal_close(inner), RWAL_OK);
    CHECK_STATUS(rwal_set_log_callback(NULL, 0, NULL), RWAL_OK);
}

static void test_log_callback_reentry(const char *scratch) {
    char outer_dir[4096], inner_dir[4096];
    snprintf(outer_dir, sizeof outer_dir, "%s/reentry-outer", scratch);
    snprintf(inner_dir, sizeof inner_dir, "%s/reentry-inner", scratch);
    reentrant_dir = inner_dir;
    small_segments = rwal_options_new();
    CHECK_STATUS(rwal_options_set_segment_size(small_segments, 1 << 20), RWAL_OK);
    CHECK_STATUS(rwal_set_log_callback(on_log_reentrant, RWAL_LOG_INFO, NULL), RWAL_OK);
    rwal_log *log = NULL;
    /* The open reports "created" and "opened": the callback ran for the first only. */
    CHECK_STATUS(rwal_open(outer_dir, small_segments, &log), RWAL_OK);
    CHECK(reentrant_calls == 1);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
    CHECK_STATUS(rwal_open(outer_dir, small_segments, &log), RWAL_OK);
    CHECK(reentrant_calls == 1);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
    rwal_options_free(small_segments);
}

static void test_version_and_statuses(void) {
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", RWAL_VERSION_MAJOR, RWAL_VERSION_MINOR,
             RWAL_VERSION_PATCH);
    CHECK(strcmp(rwal_version(), expected) == 0);
    CHECK(strcmp(rwal_status_str(RWAL_OK), "RWAL_OK") == 0);
    CHECK(strcmp(rwal_status_str(RWAL_ERR_LOCKED), "RWAL_ERR_LOCKED") == 0);
    CHECK(rwal_status_str(12345) != NULL);
}

static void test_options(void) {
    rwal_options *opts = rwal_options_new();
    CHECK(opts != NULL);
    CHECK_STATUS(rwal_options_set_segment_size(opts, 1000), RWAL_ERR_INVALID_ARGUMENT);
    char msg[256];
    size_t len = rwal_last_error(msg, sizeof msg);
    CHECK(len > 0 && strstr(msg, "segment_bytes") != NULL);
    /* A message longer than the buffer is cut and NUL-terminated; the full length returned. */
    char tiny[4];
    CHECK(rwal_last_error(tiny, sizeof tiny) == len && strlen(tiny) == 3);
    CHECK_STATUS(rwal_options_set_segment_size(opts, 1 << 20), RWAL_OK);
    CHECK_STATUS(rwal_options_set_backend(opts, 99), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_options_set_backend(opts, RWAL_BACKEND_STAGED), RWAL_OK);
    CHECK_STATUS(rwal_options_set_recovery_mode(opts, -1), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_options_set_commit_delay_us(opts, 5000000), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_options_set_segment_size(NULL, 1 << 20), RWAL_ERR_INVALID_ARGUMENT);
    rwal_options_free(opts);
    rwal_options_free(NULL);
}

static void test_log(const char *dir) {
    CHECK_STATUS(rwal_set_log_callback(on_log, RWAL_LOG_INFO, &messages), RWAL_OK);
    /* A level that is no RWAL_LOG_* value is refused and leaves the callback set above. */
    CHECK_STATUS(rwal_set_log_callback(on_log, 0, NULL), RWAL_ERR_INVALID_ARGUMENT);
    char why[256];
    rwal_last_error(why, sizeof why);
    CHECK(strstr(why, "log level 0") != NULL);
    CHECK_STATUS(rwal_set_log_callback(on_log, RWAL_LOG_INFO + 1, NULL), RWAL_ERR_INVALID_ARGUMENT);
    /* Without a callback the level does not matter. */
    CHECK_STATUS(rwal_set_log_callback(NULL, 77, NULL), RWAL_OK);
    CHECK_STATUS(rwal_set_log_callback(on_log, RWAL_LOG_INFO, &messages), RWAL_OK);
    CHECK_STATUS(rwal_set_log_callback(on_log, -1, NULL), RWAL_ERR_INVALID_ARGUMENT);
    rwal_options *opts = rwal_options_new();
    CHECK_STATUS(rwal_options_set_segment_size(opts, 1 << 20), RWAL_OK);
    /* A close gives back every thread and descriptor the log took (checked at the end). */
    const int fds_before = count_entries("/proc/self/fd");
    const int threads_before = count_entries("/proc/self/task");
    rwal_log *log = NULL;
    CHECK_STATUS(rwal_open(dir, opts, &log), RWAL_OK);
    CHECK(log != NULL);
    CHECK(messages > 0);
    CHECK(count_entries("/proc/self/fd") > fds_before);
    CHECK(count_entries("/proc/self/task") > threads_before);
    /* A new log: recovery's one decision is its creation, described whole, or cut to the
     * buffer with a NUL and the full length returned. */
    rwal_recovery_report created;
    CHECK_STATUS(rwal_recovery_report_get(log, &created), RWAL_OK);
    CHECK(created.events == 1);
    size_t described = rwal_recovery_event(log, 0, NULL, 0);
    CHECK(described == strlen("Created"));
    char text[16];
    memset(text, 'x', sizeof text);
    CHECK(rwal_recovery_event(log, 0, text, sizeof text) == described);
    CHECK(strcmp(text, "Created") == 0 && text[described + 1] == 'x');
    char cut[4];
    CHECK(rwal_recovery_event(log, 0, cut, sizeof cut) == described);
    CHECK(memcmp(cut, "Cre", 4) == 0);
    CHECK_STATUS(rwal_set_log_callback(NULL, 0, NULL), RWAL_OK);

    uint64_t lsn = 99;
    CHECK_STATUS(rwal_first_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 1);
    CHECK_STATUS(rwal_last_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 0);

    /* A second open of the same directory is locked. */
    rwal_log *second = NULL;
    CHECK_STATUS(rwal_open(dir, opts, &second), RWAL_ERR_LOCKED);
    CHECK(second == NULL);

    CHECK_STATUS(rwal_append(log, (const uint8_t *)"hello", 5, &lsn), RWAL_OK);
    CHECK(lsn == 1);
    CHECK_STATUS(rwal_append(log, NULL, 0, &lsn), RWAL_OK);
    CHECK(lsn == 2);
    CHECK_STATUS(rwal_append(log, NULL, 3, &lsn), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_append(NULL, (const uint8_t *)"x", 1, &lsn), RWAL_ERR_INVALID_ARGUMENT);

    rwal_slice batch[3] = {{(const uint8_t *)"a", 1}, {(const uint8_t *)"bb", 2}, {(const uint8_t *)"ccc", 3}};
    uint64_t first = 0;
    CHECK_STATUS(rwal_append_batch(log, batch, 3, &first), RWAL_OK);
    CHECK(first == 3);
    /* An empty batch is refused for being empty, whether or not `records` is NULL. */
    CHECK_STATUS(rwal_append_batch(log, NULL, 0, &first), RWAL_ERR_INVALID_ARGUMENT);
    char msg[128];
    rwal_last_error(msg, sizeof msg);
    CHECK(strstr(msg, "at least one record") != NULL);
    CHECK_STATUS(rwal_append_batch(log, NULL, 2, &first), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_append(log, (const uint8_t *)"x", (size_t)-1, &lsn),
                 RWAL_ERR_INVALID_ARGUMENT);

    size_t len = 0;
    uint8_t buf[16];
    CHECK_STATUS(rwal_read(log, 1, buf, sizeof buf, &len), RWAL_ERR_NOT_DURABLE);
    CHECK(strcmp(rwal_status_str(RWAL_ERR_NOT_DURABLE), "RWAL_ERR_NOT_DURABLE") == 0);
    CHECK_STATUS(rwal_commit(log, 5), RWAL_OK);
    CHECK_STATUS(rwal_commit(log, 6), RWAL_ERR_NOT_FOUND);
    CHECK_STATUS(rwal_durable_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 5);

    CHECK_STATUS(rwal_read(log, 1, buf, 2, &len), RWAL_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    CHECK_STATUS(rwal_read(log, 1, buf, sizeof buf, &len), RWAL_OK);
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_STATUS(rwal_read(log, 2, NULL, 0, &len), RWAL_OK);
    CHECK(len == 0);
    /* LSNs start at 1: LSN 0 is a wrong argument, not a compacted record. */
    CHECK_STATUS(rwal_read(log, 0, buf, sizeof buf, &len), RWAL_ERR_INVALID_ARGUMENT);

    rwal_reader *reader = NULL;
    CHECK_STATUS(rwal_reader_open(log, 1, &reader), RWAL_OK);
    const uint8_t *data = NULL;
    uint64_t expect = 1;
    rwal_status status;
    while ((status = rwal_reader_next(reader, &lsn, &data, &len)) == RWAL_OK) {
        CHECK(lsn == expect);
        expect++;
    }
    CHECK(status == RWAL_END);
    CHECK(expect == 6);
    /* Microseconds: 20 ms here, not 20 s (milliseconds) nor 20 us (nanoseconds). The upper
     * bound leaves valgrind's slowness plenty of room. */
    double started = now_ms();
    CHECK_STATUS(rwal_reader_next_timeout(reader, 20000, &lsn, &data, &len), RWAL_ERR_TIMEOUT);
    double waited = now_ms() - started;
    CHECK(waited >= 19.0 && waited < 5000.0);
    /* The reader is at LSN 5: cutting below it is refused. */
    CHECK_STATUS(rwal_truncate_after(log, 2), RWAL_ERR_PINNED);
    rwal_reader_free(reader);
    rwal_reader_free(NULL);
    CHECK_STATUS(rwal_truncate_after(log, 2), RWAL_OK);
    CHECK_STATUS(rwal_last_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 2);

    rwal_stats stats;
    CHECK_STATUS(rwal_stats_get(log, &stats), RWAL_OK);
    CHECK(stats.syncs >= 1 && stats.commits >= 2);

    /* A reader left open past rwal_close answers RWAL_ERR_CLOSED and is still freed. */
    CHECK_STATUS(rwal_reader_open(log, 1, &reader), RWAL_OK);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_ERR_CLOSED);
    rwal_reader_free(reader);
    CHECK_STATUS(rwal_close(NULL), RWAL_OK);

    /* Reopen: everything committed is there, and the report says what recovery read. */
    CHECK_STATUS(rwal_open(dir, NULL, &log), RWAL_OK);
    rwal_recovery_report report;
    CHECK_STATUS(rwal_recovery_report_get(log, &report), RWAL_OK);
    CHECK(report.last_lsn == 2 && report.records == 2 && report.mode == RWAL_RECOVERY_TOLERATE_TORN_TAIL);
    CHECK(rwal_recovery_event(log, report.events, NULL, 0) == 0);
    CHECK_STATUS(rwal_read(log, 1, buf, sizeof buf, &len), RWAL_OK);
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_STATUS(rwal_last_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 2);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
    rwal_options_free(opts);
    CHECK(wait_back_to(fds_before, threads_before, 60000));
}

/* A payload damaged behind the open log's back: a reader checking checksums (the default)
 * stops at it with RWAL_ERR_CORRUPTED; one told not to returns the bytes as found. With the
 * staged backend: with mmap, the active segment's records are checked whatever the reader
 * says (its reads show copies in progress). */
static void test_reader_verify_checksums(const char *scratch) {
    char dir[4096], segment[4200];
    snprintf(dir, sizeof dir, "%s/verify", scratch);
    snprintf(segment, sizeof segment, "%s/%020d.seg", dir, 1);
    rwal_options *opts = rwal_options_new();
    CHECK(opts != NULL);
    CHECK_STATUS(rwal_options_set_backend(opts, RWAL_BACKEND_STAGED), RWAL_OK);
    rwal_log *log = NULL;
    CHECK_STATUS(rwal_open(dir, opts, &log), RWAL_OK);
    rwal_options_free(opts);
    uint64_t lsn = 0;
    CHECK_STATUS(rwal_append(log, (const uint8_t *)"first record", 12, &lsn), RWAL_OK);
    CHECK_STATUS(rwal_append(log, (const uint8_t *)"second record", 13, &lsn), RWAL_OK);
    CHECK_STATUS(rwal_sync(log, &lsn), RWAL_OK);

    /* Find the second payload in the segment file and change its first byte. */
    FILE *file = fopen(segment, "r+b");
    CHECK(file != NULL);
    if (file == NULL) {
        CHECK_STATUS(rwal_close(log), RWAL_OK);
        return;
    }
    static uint8_t bytes[1 << 16];
    size_t got = fread(bytes, 1, sizeof bytes, file);
    long at = -1;
    for (size_t i = 0; i + 13 <= got && at < 0; i++) {
        if (memcmp(bytes + i, "second record", 13) == 0) {
            at = (long)i;
        }
    }
    CHECK(at > 0);
    CHECK(fseek(file, at, SEEK_SET) == 0 && fputc('S', file) == 'S');
    CHECK(fclose(file) == 0);

    rwal_reader *reader = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_STATUS(rwal_reader_open(log, 1, &reader), RWAL_OK);
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_OK);
    CHECK(lsn == 1 && len == 12 && memcmp(data, "first record", 12) == 0);
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_ERR_CORRUPTED);
    rwal_reader_free(reader);

    CHECK_STATUS(rwal_reader_open(log, 1, &reader), RWAL_OK);
    CHECK_STATUS(rwal_reader_set_verify_checksums(reader, false), RWAL_OK);
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_OK);
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_OK);
    CHECK(lsn == 2 && len == 13 && memcmp(data, "Second record", 13) == 0);
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_END);
    rwal_reader_free(reader);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
}

/* A reader that let go of its record (rwal_reader_release, after copying it) does not keep a
 * closed log's directory locked; one holding a record does, until it is freed. */
static void test_reader_release(const char *scratch) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/release", scratch);
    rwal_log *log = NULL, *again = NULL;
    CHECK_STATUS(rwal_open(dir, NULL, &log), RWAL_OK);
    uint64_t lsn = 0;
    CHECK_STATUS(rwal_append(log, (const uint8_t *)"kept", 4, &lsn), RWAL_OK);
    CHECK_STATUS(rwal_sync(log, &lsn), RWAL_OK);
    rwal_reader *released = NULL, *holding = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_STATUS(rwal_reader_open(log, 1, &released), RWAL_OK);
    CHECK_STATUS(rwal_reader_open(log, 1, &holding), RWAL_OK);
    CHECK_STATUS(rwal_reader_next(released, &lsn, &data, &len), RWAL_OK);
    rwal_reader_release(released);
    rwal_reader_release(released); /* twice: nothing more */
    rwal_reader_release(NULL);
    CHECK_STATUS(rwal_reader_next(holding, &lsn, &data, &len), RWAL_OK);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
    CHECK_STATUS(rwal_open(dir, NULL, &again), RWAL_ERR_LOCKED);
    rwal_reader_release(holding);
    CHECK_STATUS(rwal_open(dir, NULL, &again), RWAL_OK);
    /* A reader of the closed log reads nothing more. */
    CHECK_STATUS(rwal_reader_next(released, &lsn, &data, &len), RWAL_ERR_CLOSED);
    rwal_reader_free(released);
    rwal_reader_free(holding);
    CHECK_STATUS(rwal_close(again), RWAL_OK);
}

static void test_checkpoints(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoints", dir);
    rwal_options *opts = rwal_options_new();
    CHECK_STATUS(rwal_options_set_segment_size(opts, 1 << 20), RWAL_OK);
    rwal_log *log = NULL;
    CHECK_STATUS(rwal_open(path, opts, &log), RWAL_OK);
    uint64_t lsn = 0;
    size_t len = 0;
    uint8_t buf[64];
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, buf, sizeof buf, &len), RWAL_ERR_NOT_FOUND);
    static uint8_t record[300 * 1024];
    for (int i = 0; i < 12; i++) {
        CHECK_STATUS(rwal_append(log, record, sizeof record, &lsn), RWAL_OK);
    }
    CHECK_STATUS(rwal_sync(log, &lsn), RWAL_OK);
    /* A pin at 2 holds compaction. Taken before the checkpoint: the log's background
     * maintenance may compact as soon as there is one. */
    rwal_pin *pin = NULL;
    CHECK_STATUS(rwal_pin_open(log, "replica", 2, 0, &pin), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint(log, 13, (const uint8_t *)"x", 1), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_checkpoint(log, 6, (const uint8_t *)"state@6", 7), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, buf, 3, &len), RWAL_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 7);
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, buf, sizeof buf, &len), RWAL_OK);
    CHECK(lsn == 6 && len == 7 && memcmp(buf, "state@6", 7) == 0);

    /* The pin holds compaction; released, the segments before the checkpoint go. */
    CHECK_STATUS(rwal_compact(log), RWAL_OK);
    CHECK_STATUS(rwal_first_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 1);
    CHECK_STATUS(rwal_pin_move(pin, 5), RWAL_OK);
    rwal_pin_free(pin);
    rwal_pin_free(NULL);
    CHECK_STATUS(rwal_compact(log), RWAL_OK);
    CHECK_STATUS(rwal_first_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 7);
    CHECK_STATUS(rwal_read(log, 3, buf, sizeof buf, &len), RWAL_ERR_COMPACTED);

    /* A snapshot streamed in chunks, read back in chunks. */
    rwal_checkpoint_writer *writer = NULL;
    CHECK_STATUS(rwal_checkpoint_writer_open(log, 12, 10, &writer), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_writer_write(writer, (const uint8_t *)"01234", 5), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_writer_write(writer, (const uint8_t *)"56789", 5), RWAL_OK);
    /* A length no object can have is refused, not read. */
    CHECK_STATUS(rwal_checkpoint_writer_write(writer, (const uint8_t *)"x", SIZE_MAX),
                 RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_checkpoint_writer_finish(writer), RWAL_OK);
    rwal_snapshot_reader *snapshot = NULL;
    uint64_t snapshot_len = 0;
    CHECK_STATUS(rwal_snapshot_open(log, &lsn, &snapshot_len, &snapshot), RWAL_OK);
    CHECK(lsn == 12 && snapshot_len == 10);
    char whole[16] = {0};
    size_t got = 0;
    rwal_status status;
    while ((status = rwal_snapshot_read(snapshot, buf, 4, &len)) == RWAL_OK) {
        memcpy(whole + got, buf, len);
        got += len;
    }
    CHECK(status == RWAL_END && got == 10 && memcmp(whole, "0123456789", 10) == 0);
    /* A read of 0 bytes could never reach the end: refused. */
    CHECK_STATUS(rwal_snapshot_read(snapshot, buf, 0, &len), RWAL_ERR_INVALID_ARGUMENT);
    rwal_snapshot_free(snapshot);
    /* An abandoned writer leaves the checkpoint as it was. */
    CHECK_STATUS(rwal_checkpoint_writer_open(log, 12, 5, &writer), RWAL_OK);
    rwal_checkpoint_writer_free(writer);
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, buf, sizeof buf, &len), RWAL_OK);
    CHECK(lsn == 12 && len == 10);
    /* Without a snapshot and with an empty one, the checkpoint copies 0 bytes; the snapshot
     * reader tells the two apart. */
    CHECK_STATUS(rwal_checkpoint(log, 12, NULL, 0), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, buf, sizeof buf, &len), RWAL_OK);
    CHECK(lsn == 12 && len == 0);
    CHECK_STATUS(rwal_snapshot_open(log, &lsn, &snapshot_len, &snapshot), RWAL_ERR_NOT_FOUND);
    CHECK_STATUS(rwal_checkpoint(log, 12, (const uint8_t *)"", 0), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, buf, sizeof buf, &len), RWAL_OK);
    CHECK(lsn == 12 && len == 0);
    CHECK_STATUS(rwal_snapshot_open(log, &lsn, &snapshot_len, &snapshot), RWAL_OK);
    CHECK(lsn == 12 && snapshot_len == 0);
    rwal_snapshot_free(snapshot);
    /* A snapshot larger than the library's 1 MiB slices, copied whole into the caller's
     * buffer; damaged, it is refused as corrupted. */
    size_t big_len = (5u << 19) + 3;
    uint8_t *big = malloc(big_len);
    uint8_t *back = malloc(big_len);
    CHECK(big != NULL && back != NULL);
    for (size_t i = 0; i < big_len; i++) big[i] = (uint8_t)(i * 7 + i / 4096);
    CHECK_STATUS(rwal_checkpoint(log, 12, big, big_len), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, back, big_len, &len), RWAL_OK);
    CHECK(lsn == 12 && len == big_len && memcmp(back, big, big_len) == 0);
    char snap_path[4200];
    snprintf(snap_path, sizeof snap_path, "%s/snapshot-%020d.snap", path, 12);
    FILE *file = fopen(snap_path, "r+b");
    CHECK(file != NULL);
    if (file != NULL) {
        CHECK(fseek(file, -100, SEEK_END) == 0);
        int byte = fgetc(file);
        CHECK(fseek(file, -100, SEEK_END) == 0);
        CHECK(fputc(byte ^ 0x5a, file) != EOF);
        CHECK(fclose(file) == 0);
    }
    CHECK_STATUS(rwal_checkpoint_latest(log, &lsn, back, big_len, &len), RWAL_ERR_CORRUPTED);
    CHECK_STATUS(rwal_checkpoint(log, 12, (const uint8_t *)"", 0), RWAL_OK);
    free(big);
    free(back);
    /* A pin outlives the log's close, but only to be freed: moving it says the log is closed. */
    CHECK_STATUS(rwal_pin_open(log, "late", 12, 0, &pin), RWAL_OK);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
    CHECK_STATUS(rwal_pin_move(pin, 13), RWAL_ERR_CLOSED);
    rwal_pin_free(pin);
    rwal_options_free(opts);
}

static void test_no_log(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/does-not-exist", dir);
    rwal_options *opts = rwal_options_new();
    CHECK_STATUS(rwal_options_set_create(opts, false), RWAL_OK);
    rwal_log *log = NULL;
    CHECK_STATUS(rwal_open(path, opts, &log), RWAL_ERR_NO_LOG);
    CHECK(log == NULL);
    CHECK_STATUS(rwal_open(NULL, opts, &log), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_open(path, opts, NULL), RWAL_ERR_INVALID_ARGUMENT);
    rwal_options_free(opts);
}

/* A child forked without an exec (a pre-fork server's worker) leaves the parent's log to the
 * parent: every call on the inherited handles is refused before it touches anything, and the
 * child's close frees its copy only. The parent then goes on with the log as if the child had
 * not been (docs/c-api.md). The child reports through its exit status: 0 when every refusal
 * held, 1 otherwise (valgrind, following the fork, makes it 1 on a memory error too). */
/* In the child: counts a call that was not refused as forked, and says which. */
#define REFUSED(call, bad)                                                           \
    do {                                                                             \
        rwal_status got_ = (call);                                                   \
        if (got_ != RWAL_ERR_INVALID_ARGUMENT) {                                     \
            fprintf(stderr, "%s:%d: in the forked child %s returned %s\n", __FILE__,  \
                    __LINE__, #call, rwal_status_str(got_));                         \
            (bad)++;                                                                 \
        }                                                                            \
    } while (0)

static int child_refuses_inherited_handles(rwal_log *log, rwal_reader *reader, rwal_pin *pin,
                                           rwal_checkpoint_writer *writer) {
    int bad = 0;
    uint64_t lsn = 0;
    char msg[512];
    REFUSED(rwal_append(log, (const uint8_t *)"child", 5, &lsn), bad);
    rwal_last_error(msg, sizeof msg);
    if (strstr(msg, "forked from process") == NULL) {
        fprintf(stderr, "the forked child's refusal says: %s\n", msg);
        bad++;
    }
    REFUSED(rwal_commit(log, 1), bad);
    REFUSED(rwal_sync(log, &lsn), bad);
    uint8_t buf[16];
    size_t len = 0;
    REFUSED(rwal_read(log, 1, buf, sizeof buf, &len), bad);
    const uint8_t *data = NULL;
    REFUSED(rwal_reader_next(reader, &lsn, &data, &len), bad);
    REFUSED(rwal_pin_move(pin, 2), bad);
    REFUSED(rwal_checkpoint_writer_write(writer, (const uint8_t *)"stat", 4), bad);
    REFUSED(rwal_checkpoint(log, 1, (const uint8_t *)"s", 1), bad);
    REFUSED(rwal_truncate_after(log, 0), bad);
    /* Its counters are under a lock a thread of the parent's may have held at the fork. */
    rwal_stats stats;
    REFUSED(rwal_stats_get(log, &stats), bad);
    /* Frees the child's copies, touching nothing of the parent's (the snapshot file the
     * parent's writer is writing stays). */
    rwal_checkpoint_writer_free(writer);
    rwal_pin_free(pin);
    rwal_reader_free(reader);
    REFUSED(rwal_close(log), bad);
    return bad == 0 ? 0 : 1;
}

static void test_fork_refusals(const char *scratch) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/forked", scratch);
    /* No background thread: valgrind follows the child, and at its exit checks its heap for
     * leaks; what only a thread of the parent's referenced (its stack, its thread-locals) would
     * be reported lost in the child, which has no such thread. */
    rwal_options *opts = rwal_options_new();
    CHECK_STATUS(rwal_options_set_background_thread(opts, false), RWAL_OK);
    rwal_log *log = NULL;
    CHECK_STATUS(rwal_open(dir, opts, &log), RWAL_OK);
    uint64_t lsn = 0;
    CHECK_STATUS(rwal_append(log, (const uint8_t *)"parent", 6, &lsn), RWAL_OK);
    CHECK_STATUS(rwal_commit(log, lsn), RWAL_OK);
    rwal_reader *reader = NULL;
    CHECK_STATUS(rwal_reader_open(log, 1, &reader), RWAL_OK);
    rwal_pin *pin = NULL;
    CHECK_STATUS(rwal_pin_open(log, "backup", 1, 0, &pin), RWAL_OK);
    rwal_checkpoint_writer *writer = NULL;
    CHECK_STATUS(rwal_checkpoint_writer_open(log, 1, 8, &writer), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_writer_write(writer, (const uint8_t *)"sta", 3), RWAL_OK);

    fflush(NULL);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        _exit(child_refuses_inherited_handles(log, reader, pin, writer));
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* The parent's handles are as they were: its append takes the next LSN (the child's
     * took none), its writer finishes the checkpoint the child could not touch. */
    CHECK_STATUS(rwal_append(log, (const uint8_t *)"after", 5, &lsn), RWAL_OK);
    CHECK(lsn == 2);
    CHECK_STATUS(rwal_commit(log, lsn), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_writer_write(writer, (const uint8_t *)"te-1", 4), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_writer_write(writer, (const uint8_t *)"!", 1), RWAL_OK);
    CHECK_STATUS(rwal_checkpoint_writer_finish(writer), RWAL_OK);
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_STATUS(rwal_reader_next(reader, &lsn, &data, &len), RWAL_OK);
    CHECK(lsn == 1 && len == 6 && memcmp(data, "parent", 6) == 0);
    CHECK_STATUS(rwal_pin_move(pin, 2), RWAL_OK);
    rwal_pin_free(pin);
    rwal_reader_free(reader);
    CHECK_STATUS(rwal_close(log), RWAL_OK);

    /* Reopened, the log holds the parent's two records and its checkpoint. */
    CHECK_STATUS(rwal_open(dir, opts, &log), RWAL_OK);
    rwal_options_free(opts);
    CHECK_STATUS(rwal_last_lsn(log, &lsn), RWAL_OK);
    CHECK(lsn == 2);
    uint8_t buf[16];
    CHECK_STATUS(rwal_read(log, 2, buf, sizeof buf, &len), RWAL_OK);
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);
    CHECK_STATUS(rwal_close(log), RWAL_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/log", argv[1]);
    test_version_and_statuses();
    test_options();
    test_log(dir);
    test_checkpoints(argv[1]);
    test_reader_verify_checksums(argv[1]);
    test_reader_release(argv[1]);
    test_no_log(argv[1]);
    test_log_callback_reentry(argv[1]);
    test_fork_refusals(argv[1]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
