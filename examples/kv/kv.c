/* kv: a small key-value store that embeds rwal through its C ABI.
 *
 * Every put is a log record "KEY=VALUE", committed before it is acknowledged. On start the
 * state is rebuilt from the latest checkpoint's snapshot plus the log after it; `checkpoint`
 * writes the whole state as a snapshot at the durable LSN and compacts the log.
 *
 * usage: kv DIR [mmap|staged|pwrite|io_uring]   (the log's backend; the library's default,
 * mmap or on a copy-on-write file system staged, unless given)
 * then commands on standard input, one per line (at most 1023 bytes, no NUL byte):
 *   put KEY VALUE   -> "ok KEY VALUE" once durable; KEY is 1 to 63 bytes without '=' or
 *                      spaces, VALUE at most 255 bytes ("error: ..." otherwise, nothing logged)
 *   get KEY         -> "value VALUE" or "missing"
 *   checkpoint      -> "checkpointed LSN" ("checkpointed 0": nothing to checkpoint yet;
 *                      "error: ..." on a full disk, nothing written, the log as it was)
 *   dump            -> "KEY=VALUE" lines, then "end"
 * "ok" means the put is synced: it survives a crash of the process, and a power cut if the
 * disk honours its syncs. A put the process died in the middle of may or may not be there
 * after a restart. A failed commit (the log is poisoned) ends the process. A full disk
 * refuses the put or the checkpoint before anything is logged, and the store goes on; on a
 * copy-on-write file system or under a quota the disk may fill while the log writes back or
 * syncs, or while a checkpoint writes the control file, instead, which poisons the log: the
 * process then ends at that checkpoint or at its next put, and no put it acknowledged is lost. Replaying the log after the checkpoint applies each put once; a put
 * overwrites, so this example would not show a record applied twice (one that counted or
 * appended would have to apply records after the checkpoint's LSN only, as load() does).
 *
 * Built with -DKV_TEST_NO_COMMIT, it acknowledges puts without committing them: a broken kv,
 * which `make kv-test` builds only to show that crash_test.py catches it. Do not copy that.
 */
#include "rwal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 64
#define VALUE_MAX 256

struct entry {
    char key[KEY_MAX];
    char value[VALUE_MAX];
};

static struct entry *entries = NULL;
static size_t entry_count = 0;
static size_t entry_cap = 0;

static void die(const char *what, rwal_status status) {
    char msg[512];
    rwal_last_error(msg, sizeof msg);
    fprintf(stderr, "kv: %s: %s: %s\n", what, rwal_status_str(status), msg);
    exit(1);
}

/* Sets KEY to VALUE; 0 (nothing set) if either does not fit the table's fields. */
static int set(const char *key, size_t key_len, const char *value, size_t value_len) {
    if (key_len == 0 || key_len >= KEY_MAX || value_len >= VALUE_MAX) {
        return 0;
    }
    for (size_t i = 0; i < entry_count; i++) {
        if (strlen(entries[i].key) == key_len && memcmp(entries[i].key, key, key_len) == 0) {
            memcpy(entries[i].value, value, value_len);
            entries[i].value[value_len] = '\0';
            return 1;
        }
    }
    if (entry_count == entry_cap) {
        entry_cap = entry_cap ? entry_cap * 2 : 64;
        entries = realloc(entries, entry_cap * sizeof *entries);
        if (!entries) {
            fprintf(stderr, "kv: out of memory\n");
            exit(1);
        }
    }
    memcpy(entries[entry_count].key, key, key_len);
    entries[entry_count].key[key_len] = '\0';
    memcpy(entries[entry_count].value, value, value_len);
    entries[entry_count].value[value_len] = '\0';
    entry_count++;
    return 1;
}

/* Applies "KEY=VALUE" (a record, or a line of a snapshot). 0 for anything else (no '=', a NUL
 * byte, a key or value that does not fit): the caller refuses to start rather than drop it,
 * since the next checkpoint would write a state without it and compact it away for good. */
static int apply(const uint8_t *data, size_t len) {
    const char *text = (const char *)data;
    const char *eq = memchr(text, '=', len);
    if (!eq || memchr(text, '\0', len)) {
        return 0;
    }
    return set(text, (size_t)(eq - text), eq + 1, len - (size_t)(eq - text) - 1);
}

/* Ends the process over data this kv cannot read: another writer's, or a kv's with other
 * limits. */
static void unreadable(const char *where, unsigned long long at) {
    fprintf(stderr,
            "kv: the %s %llu is not KEY=VALUE with a key of 1 to %d bytes and a value of at "
            "most %d, without NUL: not started (dropped, it would be lost at the next "
            "checkpoint)\n",
            where, at, KEY_MAX - 1, VALUE_MAX - 1);
    exit(1);
}

static void load(rwal_log *log) {
    uint64_t checkpoint = 0, snapshot_len = 0;
    rwal_snapshot_reader *snapshot = NULL;
    rwal_status status = rwal_snapshot_open(log, &checkpoint, &snapshot_len, &snapshot);
    if (status == RWAL_OK) {
        char *text = snapshot_len < SIZE_MAX ? malloc((size_t)snapshot_len + 1) : NULL;
        if (!text) {
            fprintf(stderr, "kv: no memory for a snapshot of %llu bytes\n",
                    (unsigned long long)snapshot_len);
            exit(1);
        }
        size_t got = 0, len = 0;
        uint8_t chunk[4096];
        while ((status = rwal_snapshot_read(snapshot, chunk, sizeof chunk, &len)) == RWAL_OK) {
            if (len > snapshot_len - got) {
                fprintf(stderr, "kv: the snapshot holds more than its %llu bytes\n",
                        (unsigned long long)snapshot_len);
                exit(1);
            }
            memcpy(text + got, chunk, len);
            got += len;
        }
        if (status != RWAL_END) {
            die("read snapshot", status);
        }
        rwal_snapshot_free(snapshot);
        if (got != snapshot_len) {
            fprintf(stderr, "kv: the snapshot holds %zu of its %llu bytes\n", got,
                    (unsigned long long)snapshot_len);
            exit(1);
        }
        size_t start = 0;
        unsigned long long line = 1;
        for (size_t i = 0; i < got; i++) {
            if (text[i] == '\n') {
                if (!apply((const uint8_t *)text + start, i - start)) {
                    unreadable("snapshot's line", line);
                }
                start = i + 1;
                line++;
            }
        }
        if (start != got) {
            /* kv ends every line with '\n': a last line without one is not kv's. */
            unreadable("snapshot's line", line);
        }
        free(text);
    } else if (status != RWAL_ERR_NOT_FOUND) {
        die("open snapshot", status);
    }
    uint64_t first = 0;
    if ((status = rwal_first_lsn(log, &first)) != RWAL_OK) {
        die("first LSN", status);
    }
    if (first > checkpoint + 1) {
        /* Records between the state and the log are gone (compacted with no checkpoint that
         * covers them): replaying from `first` would silently skip them. */
        fprintf(stderr, "kv: the log starts at %llu, after the checkpoint at %llu\n",
                (unsigned long long)first, (unsigned long long)checkpoint);
        exit(1);
    }
    rwal_reader *reader = NULL;
    status = rwal_reader_open(log, checkpoint + 1, &reader);
    if (status != RWAL_OK) {
        die("open reader", status);
    }
    uint64_t lsn;
    const uint8_t *data;
    size_t len;
    while ((status = rwal_reader_next(reader, &lsn, &data, &len)) == RWAL_OK) {
        if (!apply(data, len)) {
            unreadable("record at LSN", (unsigned long long)lsn);
        }
    }
    if (status != RWAL_END) {
        die("read log", status);
    }
    rwal_reader_free(reader);
}

static void checkpoint(rwal_log *log) {
    uint64_t lsn = 0;
    rwal_status status = rwal_sync(log, &lsn);
    if (status != RWAL_OK) {
        die("sync", status);
    }
    if (lsn == 0) {
        /* Nothing logged yet: a checkpoint at LSN 0 would cover no record (refused). */
        printf("checkpointed 0\n");
        return;
    }
    size_t size = 0;
    for (size_t i = 0; i < entry_count; i++) {
        size += strlen(entries[i].key) + strlen(entries[i].value) + 2;
    }
    char *text = malloc(size + 1);
    if (!text) {
        fprintf(stderr, "kv: out of memory\n");
        exit(1);
    }
    size_t at = 0;
    for (size_t i = 0; i < entry_count; i++) {
        at += (size_t)sprintf(text + at, "%s=%s\n", entries[i].key, entries[i].value);
    }
    status = rwal_checkpoint(log, lsn, (const uint8_t *)text, at);
    free(text);
    if (status == RWAL_ERR_NO_SPACE) {
        /* No room for the snapshot: none was written, and the log still holds every put. */
        printf("error: the disk is full (no checkpoint)\n");
        return;
    }
    if (status != RWAL_OK) {
        die("checkpoint", status);
    }
    if ((status = rwal_compact(log)) != RWAL_OK) {
        die("compact", status);
    }
    printf("checkpointed %llu\n", (unsigned long long)lsn);
}

/* Reads one line of standard input into `buf`, without its '\n'. Returns its length; -1 at the
 * end of input; -2 for a line longer than `cap - 1` bytes and -3 for one holding a NUL byte,
 * both read to their end (their rest must not run as a command of its own). fgets could not
 * tell a NUL from the line's end, and took the line for a long one. */
static long read_line(char *buf, size_t cap) {
    size_t n = 0;
    int c, longer = 0, nul = 0;
    while ((c = getchar()) != EOF && c != '\n') {
        if (c == '\0') {
            nul = 1;
        }
        if (n + 1 < cap) {
            buf[n++] = (char)c;
        } else {
            longer = 1;
        }
    }
    buf[n] = '\0';
    if (c == EOF && n == 0 && !longer && !nul) {
        return -1;
    }
    return longer ? -2 : nul ? -3 : (long)n;
}

int main(int argc, char **argv) {
    static const char *const backends[] = {"mmap", "pwrite", "io_uring", "staged"};
    static const rwal_backend backend_values[] = {RWAL_BACKEND_MMAP, RWAL_BACKEND_PWRITE,
                                                  RWAL_BACKEND_IO_URING, RWAL_BACKEND_STAGED};
    int backend = 0;
    if (argc == 3) {
        for (backend = 0; backend < 4 && strcmp(argv[2], backends[backend]) != 0; backend++) {
        }
    }
    if (argc < 2 || argc > 3 || backend == 4) {
        fprintf(stderr, "usage: kv DIR [mmap|staged|pwrite|io_uring] < commands\n");
        return 2;
    }
    rwal_options *opts = rwal_options_new();
    rwal_status status = rwal_options_set_segment_size(opts, 1 << 20);
    if (status != RWAL_OK) {
        die("segment size", status);
    }
    /* Set only when asked for: a backend set is a choice, and `mmap` chosen is refused on a
     * copy-on-write file system, where the library's default is `staged`. */
    if (argc == 3 && (status = rwal_options_set_backend(opts, backend_values[backend])) != RWAL_OK) {
        die("backend", status);
    }
    rwal_log *log = NULL;
    status = rwal_open(argv[1], opts, &log);
    rwal_options_free(opts);
    if (status != RWAL_OK) {
        die("open", status);
    }
    load(log);
    char line[1024];
    long got;
    while ((got = read_line(line, sizeof line)) != -1) {
        if (got < 0) {
            if (got == -2) {
                printf("error: line longer than %zu bytes\n", sizeof line - 1);
            } else {
                printf("error: the line holds a NUL byte\n");
            }
            fflush(stdout);
            continue;
        }
        char *key = NULL, *value = NULL;
        if (strncmp(line, "put ", 4) == 0) {
            key = line + 4;
            value = strchr(key, ' ');
            if (!value) {
                printf("error: put KEY VALUE\n");
                fflush(stdout);
                continue;
            }
            *value++ = '\0';
            size_t key_len = strlen(key), value_len = strlen(value);
            /* Checked before anything is logged: a record is "KEY=VALUE", split at the first
             * '=' on replay, so a key must hold none; and both must fit the table's fields. */
            if (key_len == 0 || key_len >= KEY_MAX || value_len >= VALUE_MAX || strchr(key, '=')) {
                printf("error: KEY is 1 to %d bytes without '=', VALUE at most %d bytes\n",
                       KEY_MAX - 1, VALUE_MAX - 1);
                fflush(stdout);
                continue;
            }
            char record[KEY_MAX + VALUE_MAX + 2];
            int len = snprintf(record, sizeof record, "%s=%s", key, value);
            uint64_t lsn;
            status = rwal_append(log, (const uint8_t *)record, (size_t)len, &lsn);
            if (status == RWAL_ERR_NO_SPACE) {
                /* Nothing was logged, and the log takes more once there is room. */
                printf("error: the disk is full\n");
                fflush(stdout);
                continue;
            }
#ifndef KV_TEST_NO_COMMIT
            if (status == RWAL_OK) {
                status = rwal_commit(log, lsn);
            }
#endif
            if (status != RWAL_OK) {
                die("put", status);
            }
            set(key, strlen(key), value, strlen(value));
            printf("ok %s %s\n", key, value);
        } else if (strncmp(line, "get ", 4) == 0) {
            key = line + 4;
            int found = 0;
            for (size_t i = 0; i < entry_count && !found; i++) {
                if (strcmp(entries[i].key, key) == 0) {
                    printf("value %s\n", entries[i].value);
                    found = 1;
                }
            }
            if (!found) {
                printf("missing\n");
            }
        } else if (strcmp(line, "checkpoint") == 0) {
            checkpoint(log);
        } else if (strcmp(line, "dump") == 0) {
            for (size_t i = 0; i < entry_count; i++) {
                printf("%s=%s\n", entries[i].key, entries[i].value);
            }
            printf("end\n");
        } else if (line[0]) {
            printf("error: unknown command\n");
        }
        fflush(stdout);
    }
    if ((status = rwal_close(log)) != RWAL_OK) {
        die("close", status);
    }
    free(entries);
    return 0;
}
