/* C tests of the replicated node ABI (rwal_node_*): three nodes in this process on loopback,
 * with apply, snapshot, restore and leader callbacks. Run from `make c-test` under valgrind.
 * Usage: test_node DIR (an empty scratch directory). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "rwal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NODES 3
#define RECORDS 40
#define WAIT_MS 60000

/* One engine per node: the sum and count of the records it applied, under a lock (the apply
 * callback runs on the node's thread, the checks on the main thread). */
struct engine {
    pthread_mutex_t lock;
    uint64_t applied;
    uint64_t count;
    uint64_t sum;
    uint64_t leader;
    uint64_t leader_changes;
    /* Leader changes the callback checked against rwal_node_leader and the status, and how
     * many of those disagreed with what it was told. */
    uint64_t leader_checks;
    uint64_t leader_disagreements;
    uint64_t restores;
    uint64_t snapshots;
    /* Whether snapshots hand the state over in place (rwal_snapshot_sink_set_bytes) instead of
     * writing a copy; how many were handed over, and how many of those the node released. */
    int lend_state;
    uint64_t lent;
    uint64_t released;
    /* For the re-entry test: the node, and what its calls made from apply returned. */
    rwal_node *node;
    int reentered;
    rwal_status reentry[5];
};

/* Where the apply of a record "slow" is held until the test releases it (at most WAIT_MS). */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_released;

static void hold_at_gate(void) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&gate_lock);
    while (!gate_released &&
           pthread_cond_timedwait(&gate_cond, &gate_lock, &deadline) == 0) {
    }
    gate_released = 0;
    pthread_mutex_unlock(&gate_lock);
}

static void release_gate(void) {
    pthread_mutex_lock(&gate_lock);
    gate_released = 1;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

/* Refuses (returns -5 for) a record whose bytes are "refused"; holds one that is "slow" until
 * the test releases it (the node publishes its commit after applying it); fails the test on
 * "given up", a record that must never be proposed. */
static int on_apply(void *userdata, uint64_t lsn, uint64_t epoch, const uint8_t *data,
                    size_t len) {
    struct engine *e = userdata;
    (void)epoch;
    if (len == 7 && memcmp(data, "refused", 7) == 0) return -5;
    if (len == 4 && memcmp(data, "slow", 4) == 0) hold_at_gate();
    CHECK(!(len == 8 && memcmp(data, "given up", 8) == 0));
    if (len == 9 && memcmp(data, "call back", 9) == 0) {
        /* Calls that wait for this very thread: refused, not a node waiting for itself. */
        pthread_mutex_lock(&e->lock);
        rwal_node *node = e->node;
        pthread_mutex_unlock(&e->lock);
        uint64_t out_lsn = 0, out_epoch = 0;
        rwal_status proposed = rwal_node_propose(node, (const uint8_t *)"x", 1, &out_lsn,
                                                 &out_epoch);
        rwal_status barrier = rwal_node_read_barrier(node, 1000, &out_lsn);
        rwal_status compacted = rwal_node_compact(node);
        rwal_status closed = rwal_node_close(node);
        rwal_status shut_down = rwal_node_shutdown(node);
        pthread_mutex_lock(&e->lock);
        e->reentry[0] = proposed;
        e->reentry[1] = barrier;
        e->reentry[2] = compacted;
        e->reentry[3] = closed;
        e->reentry[4] = shut_down;
        e->reentered = 1;
        pthread_mutex_unlock(&e->lock);
    }
    pthread_mutex_lock(&e->lock);
    CHECK(lsn > e->applied);
    e->applied = lsn;
    e->count++;
    for (size_t i = 0; i < len; i++) e->sum += data[i];
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* A state handed over in place: on the heap, so that valgrind reports one the node never
 * releases. */
struct lent_state {
    struct engine *engine;
    uint64_t state[2];
};

/* The node's release of a lent state, on one of its threads. */
static void release_lent(void *release_userdata) {
    struct lent_state *lent = release_userdata;
    struct engine *e = lent->engine;
    pthread_mutex_lock(&e->lock);
    e->released++;
    pthread_mutex_unlock(&e->lock);
    free(lent);
}

static int on_snapshot(void *userdata, rwal_snapshot_sink *sink) {
    struct engine *e = userdata;
    pthread_mutex_lock(&e->lock);
    uint64_t state[2] = {e->count, e->sum};
    e->snapshots++;
    int lend = e->lend_state;
    uint64_t lent_before = lend ? e->lent++ : 0;
    pthread_mutex_unlock(&e->lock);
    if (!lend)
        return rwal_snapshot_sink_write(sink, (const uint8_t *)state, sizeof state) == RWAL_OK
                   ? 0
                   : -1;
    struct lent_state *lent = malloc(sizeof *lent);
    CHECK(lent != NULL);
    if (lent == NULL) return -1;
    lent->engine = e;
    memcpy(lent->state, state, sizeof state);
    const uint8_t *bytes = (const uint8_t *)lent->state;
    if (rwal_snapshot_sink_set_bytes(sink, bytes, sizeof lent->state, release_lent, lent) !=
        RWAL_OK) {
        free(lent);
        return -1;
    }
    if (lent_before == 0) {
        /* The first time, a second hand-over and a copy after it are refused: that snapshot
         * is abandoned although this returns 0, and the node still releases the state. */
        CHECK_STATUS(rwal_snapshot_sink_set_bytes(sink, bytes, sizeof lent->state, release_lent,
                                                  lent),
                     RWAL_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rwal_snapshot_sink_write(sink, bytes, 1), RWAL_ERR_INVALID_ARGUMENT);
    }
    return 0;
}

static int on_restore(void *userdata, uint64_t lsn, uint64_t epoch, const uint8_t *data,
                      size_t len) {
    struct engine *e = userdata;
    (void)epoch;
    /* The engine's bytes start on a page of the checkpoint's view. */
    if (len > 0) CHECK((uintptr_t)data % 4096 == 0);
    pthread_mutex_lock(&e->lock);
    uint64_t state[2] = {0, 0};
    if (len == sizeof state) memcpy(state, data, sizeof state);
    e->count = state[0];
    e->sum = state[1];
    e->applied = lsn;
    e->restores++;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* Records the leader, and asks the node who leads from here: the node's answers agree with
 * what the callback is told (before, they were those of the round before). */
static void on_leader(void *userdata, uint64_t leader, uint64_t term) {
    struct engine *e = userdata;
    pthread_mutex_lock(&e->lock);
    rwal_node *node = e->node;
    e->leader = leader;
    e->leader_changes++;
    pthread_mutex_unlock(&e->lock);
    if (node == NULL) return;
    uint64_t named = 99;
    char addr[64];
    size_t len = 0;
    rwal_node_status st;
    int agrees = rwal_node_leader(node, &named, addr, sizeof addr, &len) == RWAL_OK &&
                 named == leader && rwal_node_status_get(node, &st) == RWAL_OK &&
                 st.leader == leader && st.term == term &&
                 (leader != st.id || st.role == RWAL_ROLE_LEADER) &&
                 (leader == st.id || st.role != RWAL_ROLE_LEADER);
    pthread_mutex_lock(&e->lock);
    e->leader_checks++;
    if (!agrees) e->leader_disagreements++;
    pthread_mutex_unlock(&e->lock);
}


static rwal_node *nodes[NODES];
static struct engine engines[NODES];
/* The nodes' listening addresses, as open_cluster found them. */
static char addrs[NODES][64];

/* Waits until every node names the same leader, which leads; returns its index, or -1. */
static int wait_leader(void) {
    for (int waited = 0; waited < WAIT_MS; waited += 20) {
        rwal_node_status s[NODES];
        int agree = 1;
        for (int i = 0; i < NODES; i++) {
            if (rwal_node_status_get(nodes[i], &s[i]) != RWAL_OK) return -1;
            if (s[i].leader == 0 || s[i].leader != s[0].leader) agree = 0;
        }
        if (agree) {
            int leader = (int)s[0].leader - 1;
            if (s[leader].role == RWAL_ROLE_LEADER) return leader;
        }
        sleep_ms(20);
    }
    return -1;
}

static void open_cluster(const char *dir) {
    static const uint8_t secret[] = "a secret shared by the three C nodes";
    const uint64_t voters[NODES] = {1, 2, 3};
    for (int i = 0; i < NODES; i++) {
        pthread_mutex_init(&engines[i].lock, NULL);
        char path[512];
        snprintf(path, sizeof path, "%s/node%d", dir, i + 1);
        rwal_node_options *opts = NULL;
        CHECK_STATUS(rwal_node_options_new((uint64_t)i + 1, path, &opts), RWAL_OK);
        CHECK_STATUS(rwal_node_options_set_cluster(opts, 42, secret, 5), RWAL_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rwal_node_options_set_cluster(opts, 42, secret, sizeof secret - 1), RWAL_OK);
        CHECK_STATUS(rwal_node_options_set_listen(opts, "not an address"),
                     RWAL_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rwal_node_options_set_listen(opts, "127.0.0.1:0"), RWAL_OK);
        CHECK_STATUS(rwal_node_options_set_voters(opts, voters, SIZE_MAX, false),
                     RWAL_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rwal_node_options_set_voters(opts, voters, NODES, false), RWAL_OK);
        /* Ticks of 100 ms (elections after 1 to 2 s): valgrind runs one thread at a time, and
         * the test expects the leader it found to keep leading to the end. */
        CHECK_STATUS(rwal_node_options_set_tick_ms(opts, 100), RWAL_OK);
        /* 0 (never) on one node: a limit of zero is refused, never means none. */
        CHECK_STATUS(rwal_node_options_set_sync_stall_limit_ms(opts, i == 2 ? 0 : 3000), RWAL_OK);
        /* Ten seconds (100 ticks) for a snapshot stream to stall: valgrind is slow. */
        CHECK_STATUS(rwal_node_options_set_snapshot_timeout_ms(opts, 10000), RWAL_OK);
        CHECK_STATUS(rwal_node_options_set_callbacks(opts, on_apply, on_snapshot, on_restore,
                                                     on_leader, &engines[i]),
                     RWAL_OK);
        CHECK_STATUS(rwal_node_open(opts, &nodes[i]), RWAL_OK);
        rwal_node_options_free(opts);
        /* Before any election: the nodes know no peers yet. */
        pthread_mutex_lock(&engines[i].lock);
        engines[i].node = nodes[i];
        pthread_mutex_unlock(&engines[i].lock);
    }
    /* The listeners' ports are known now: tell every node where the others are. */
    for (int i = 0; i < NODES; i++) {
        size_t len = 0;
        char tiny[4];
        CHECK_STATUS(rwal_node_local_addr(nodes[i], tiny, sizeof tiny, &len),
                     RWAL_ERR_BUFFER_TOO_SMALL);
        CHECK(len > 9 && len <= sizeof addrs[i]);
        /* The size the error gave fits exactly, the NUL included. */
        size_t needed = len;
        CHECK_STATUS(rwal_node_local_addr(nodes[i], addrs[i], needed, &len), RWAL_OK);
        CHECK(strlen(addrs[i]) == len && len + 1 == needed);
    }
    for (int i = 0; i < NODES; i++)
        for (int j = 0; j < NODES; j++)
            if (i != j) CHECK_STATUS(rwal_node_add_peer(nodes[i], (uint64_t)j + 1, addrs[j]), RWAL_OK);
}

static void test_cluster(const char *dir) {
    const int fds_before = count_entries("/proc/self/fd");
    const int threads_before = count_entries("/proc/self/task");
    CHECK(fds_before > 0 && threads_before > 0);
    open_cluster(dir);
    CHECK(count_entries("/proc/self/fd") > fds_before + NODES);
    CHECK(count_entries("/proc/self/task") > threads_before + NODES);
    int leader = wait_leader();
    CHECK(leader >= 0);
    if (leader < 0) return;
    int follower = (leader + 1) % NODES;

    /* A follower refuses and names the leader and its address. */
    uint64_t lsn = 0, epoch = 0;
    CHECK_STATUS(rwal_node_propose(nodes[follower], (const uint8_t *)"x", 1, &lsn, &epoch),
                 RWAL_ERR_NOT_LEADER);
    CHECK(strcmp(rwal_status_str(RWAL_ERR_NOT_LEADER), "RWAL_ERR_NOT_LEADER") == 0);
    uint64_t named = 0;
    char addr[64];
    size_t len = 0;
    CHECK_STATUS(rwal_node_leader(nodes[follower], &named, addr, sizeof addr, &len), RWAL_OK);
    CHECK(named == (uint64_t)leader + 1);
    CHECK(len == strlen(addrs[leader]) && strcmp(addr, addrs[leader]) == 0);
    /* The id and the length alone: no buffer. */
    uint64_t named_alone = 0;
    size_t len_alone = 0;
    CHECK_STATUS(rwal_node_leader(nodes[follower], &named_alone, NULL, 0, &len_alone),
                 RWAL_ERR_BUFFER_TOO_SMALL);
    CHECK(named_alone == named && len_alone == len + 1);

    /* Proposals on the leader commit and reach every engine. */
    uint64_t expected_sum = 0, last = 0;
    for (int r = 0; r < RECORDS; r++) {
        uint8_t data[100];
        memset(data, r, sizeof data);
        expected_sum += (uint64_t)r * sizeof data;
        if (r % 2 == 0) {
            CHECK_STATUS(rwal_node_propose(nodes[leader], data, sizeof data, &lsn, &epoch),
                         RWAL_OK);
            CHECK_STATUS(rwal_node_wait_committed(nodes[leader], lsn, epoch, WAIT_MS), RWAL_OK);
        } else {
            /* In one call: committed when it returns. */
            lsn = 0;
            CHECK_STATUS(rwal_node_propose_and_wait(nodes[leader], data, sizeof data, WAIT_MS,
                                                    &lsn, &epoch),
                         RWAL_OK);
            rwal_node_status st;
            CHECK_STATUS(rwal_node_status_get(nodes[leader], &st), RWAL_OK);
            CHECK(st.commit_lsn >= lsn);
        }
        CHECK(lsn > last);
        last = lsn;
    }
    CHECK_STATUS(rwal_node_propose_and_wait(nodes[follower], (const uint8_t *)"x", 1, WAIT_MS,
                                            &lsn, &epoch),
                 RWAL_ERR_NOT_LEADER);
    CHECK_STATUS(rwal_node_propose_and_wait(nodes[leader], (const uint8_t *)"x", 1, WAIT_MS,
                                            NULL, &epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_propose(nodes[leader], NULL, 5, &lsn, &epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    /* Milliseconds: 100 ms here, not 100 s nor 100 us. */
    double started = now_ms();
    CHECK_STATUS(rwal_node_wait_committed(nodes[leader], last + 1000, 1, 100), RWAL_ERR_TIMEOUT);
    double waited = now_ms() - started;
    CHECK(waited >= 99.0 && waited < 10000.0);

    /* A linearizable read point on a follower covers every acknowledged write. */
    uint64_t point = 0;
    CHECK_STATUS(rwal_node_read_barrier(nodes[follower], WAIT_MS, &point), RWAL_OK);
    CHECK(point >= last);
    for (int i = 0; i < NODES; i++) {
        for (int waited = 0; waited < WAIT_MS; waited += 10) {
            rwal_node_status s;
            CHECK_STATUS(rwal_node_status_get(nodes[i], &s), RWAL_OK);
            if (s.applied_lsn >= last) break;
            sleep_ms(10);
        }
        pthread_mutex_lock(&engines[i].lock);
        CHECK(engines[i].count == RECORDS);
        CHECK(engines[i].sum == expected_sum);
        CHECK(engines[i].leader == (uint64_t)leader + 1 && engines[i].leader_changes >= 1);
        CHECK(engines[i].leader_checks >= 1 && engines[i].leader_disagreements == 0);
        pthread_mutex_unlock(&engines[i].lock);
    }

    /* The committed reader: user records with their bytes, system records marked. */
    rwal_node_reader *reader = NULL;
    CHECK_STATUS(rwal_node_reader_open(nodes[follower], 2, &reader), RWAL_OK);
    int users = 0, systems = 0;
    uint64_t sum = 0;
    for (;;) {
        uint64_t r_lsn, r_epoch;
        uint32_t kind;
        const uint8_t *data;
        size_t r_len;
        rwal_status st = rwal_node_reader_next(reader, &r_lsn, &r_epoch, &kind, &data, &r_len);
        if (st == RWAL_END) break;
        CHECK_STATUS(st, RWAL_OK);
        if (st != RWAL_OK) break;
        if (kind == RWAL_RECORD_USER) {
            users++;
            for (size_t i = 0; i < r_len; i++) sum += data[i];
        } else {
            CHECK(kind == RWAL_RECORD_SYSTEM);
            systems++;
        }
    }
    CHECK(users == RECORDS && sum == expected_sum && systems >= 1);
    rwal_node_reader_free(reader);
    rwal_node_reader_free(NULL);

    /* A checkpoint from the engine's state, and compaction. */
    rwal_node_status s;
    CHECK_STATUS(rwal_node_status_get(nodes[leader], &s), RWAL_OK);
    CHECK(s.voters == NODES && s.learners == 0 && s.role == RWAL_ROLE_LEADER);
    uint64_t state[2] = {RECORDS, expected_sum};
    CHECK_STATUS(rwal_node_checkpoint(nodes[leader], s.applied_lsn, (const uint8_t *)state,
                                      sizeof state),
                 RWAL_OK);
    CHECK_STATUS(rwal_node_checkpoint(nodes[leader], s.applied_lsn + 100, NULL, 0),
                 RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_compact(nodes[leader]), RWAL_OK);
    uint64_t change_lsn = 0, change_epoch = 0;
    CHECK_STATUS(rwal_node_change_membership(nodes[leader], 77, 4, NULL, &change_lsn,
                                             &change_epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    /* An addition of a node nobody gave an address for: refused before it is proposed. */
    CHECK_STATUS(rwal_node_change_membership(nodes[leader], RWAL_MEMBERSHIP_ADD_LEARNER, 9,
                                             NULL, &change_lsn, &change_epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    char why[256];
    rwal_last_error(why, sizeof why);
    CHECK(strstr(why, "node 9 has no known address") != NULL);
    CHECK_STATUS(rwal_node_status_get(nodes[leader], &s), RWAL_OK);
    CHECK(s.voters == NODES && s.learners == 0);
    /* A voter made a learner would be demoted: refused (before the network is touched), and
     * on a follower any change answers NOT_LEADER. */
    CHECK_STATUS(rwal_node_change_membership(nodes[leader], RWAL_MEMBERSHIP_ADD_LEARNER,
                                             (uint64_t)follower + 1, "127.0.0.1:9", &change_lsn,
                                             &change_epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    rwal_last_error(why, sizeof why);
    CHECK(strstr(why, "demote") != NULL);
    CHECK_STATUS(rwal_node_change_membership(nodes[follower], RWAL_MEMBERSHIP_ADD_LEARNER, 9,
                                             "127.0.0.1:9", &change_lsn, &change_epoch),
                 RWAL_ERR_NOT_LEADER);
    uint64_t members[NODES];
    size_t member_count = 0, voter_count = 0;
    CHECK_STATUS(rwal_node_members(nodes[leader], members, NODES, &member_count, &voter_count),
                 RWAL_OK);
    CHECK(member_count == NODES && voter_count == NODES && members[0] == 1 && members[2] == 3);
    /* A tailing reader on a follower, from past the leader's commit: nothing commits within
     * 50 ms; then the next proposal does, and the reader waits for it. */
    CHECK_STATUS(rwal_node_status_get(nodes[leader], &s), RWAL_OK);
    rwal_node_reader *tail = NULL;
    CHECK_STATUS(rwal_node_reader_open(nodes[follower], s.commit_lsn + 1, &tail), RWAL_OK);
    uint64_t t_lsn = 0, t_epoch = 0;
    uint32_t t_kind = 0;
    const uint8_t *t_data = NULL;
    size_t t_len = 0;
    CHECK_STATUS(
        rwal_node_reader_next_timeout(tail, 50, &t_lsn, &t_epoch, &t_kind, &t_data, &t_len),
        RWAL_ERR_TIMEOUT);
    CHECK_STATUS(rwal_node_reader_next_timeout(tail, 0, NULL, &t_epoch, &t_kind, &t_data,
                                               &t_len),
                 RWAL_ERR_INVALID_ARGUMENT);
    /* The cluster goes on committing. */
    CHECK_STATUS(rwal_node_propose_and_wait(nodes[leader], (const uint8_t *)"after", 5, WAIT_MS,
                                            &lsn, &epoch),
                 RWAL_OK);
    CHECK_STATUS(
        rwal_node_reader_next_timeout(tail, WAIT_MS, &t_lsn, &t_epoch, &t_kind, &t_data, &t_len),
        RWAL_OK);
    CHECK(t_lsn == lsn && t_epoch == epoch && t_kind == RWAL_RECORD_USER && t_len == 5 &&
          memcmp(t_data, "after", 5) == 0);
    rwal_node_reader_free(tail);

    /* Leadership handed to a chosen follower; the old leader then refuses and names it. */
    uint64_t moved = 0;
    CHECK_STATUS(rwal_node_transfer_leadership(nodes[follower], 0, WAIT_MS, &moved),
                 RWAL_ERR_NOT_LEADER);
    CHECK_STATUS(rwal_node_transfer_leadership(nodes[leader], (uint64_t)leader + 1, WAIT_MS,
                                               &moved),
                 RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_transfer_leadership(nodes[leader], 0, WAIT_MS, NULL),
                 RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_transfer_leadership(nodes[leader], (uint64_t)follower + 1, WAIT_MS,
                                               &moved),
                 RWAL_OK);
    CHECK(moved == (uint64_t)follower + 1);
    CHECK_STATUS(rwal_node_propose(nodes[leader], (const uint8_t *)"y", 1, &lsn, &epoch),
                 RWAL_ERR_NOT_LEADER);
    CHECK_STATUS(rwal_node_leader(nodes[leader], &named, addr, sizeof addr, &len), RWAL_OK);
    CHECK(named == (uint64_t)follower + 1);
    lsn = 0;
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        rwal_status st = rwal_node_propose_and_wait(nodes[follower], (const uint8_t *)"z", 1,
                                                    WAIT_MS, &lsn, &epoch);
        if (st == RWAL_OK) break;
        CHECK(st == RWAL_ERR_NOT_LEADER); /* not yet leading as this node sees it */
        if (st != RWAL_ERR_NOT_LEADER) break; /* each try waits WAIT_MS: no more of them */
        sleep_ms(10);
    }
    CHECK(lsn > last);

    for (int i = 0; i < NODES; i++) {
        CHECK_STATUS(rwal_node_close(nodes[i]), RWAL_OK);
        pthread_mutex_destroy(&engines[i].lock);
    }
    CHECK_STATUS(rwal_node_close(NULL), RWAL_OK);
    /* The nodes' files, sockets and threads went with them. */
    CHECK(wait_back_to(fds_before, threads_before, WAIT_MS));
}

static void test_bad_options(const char *dir) {
    rwal_node_options *opts = NULL;
    CHECK_STATUS(rwal_node_options_new(0, dir, &opts), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_new(1, NULL, &opts), RWAL_ERR_INVALID_ARGUMENT);
    char path[512];
    snprintf(path, sizeof path, "%s/lonely", dir);
    CHECK_STATUS(rwal_node_options_new(1, path, &opts), RWAL_OK);
    const uint64_t others[2] = {2, 3};
    CHECK_STATUS(rwal_node_options_set_voters(opts, others, 2, false), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_add_peer(opts, 1, "127.0.0.1:9"), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_set_tick_ms(opts, 0), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_set_tick_ms(opts, 60001), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_set_tick_ms(opts, 60000), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_tick_ms(opts, 10), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_sync_stall_limit_ms(NULL, 500), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_set_snapshot_bytes_max(opts, 0), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_set_snapshot_bytes_max(opts, 1 << 20), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_snapshot_timeout_ms(opts, 0), RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(rwal_node_options_set_snapshot_timeout_ms(opts, 1), RWAL_OK);
    /* No secret: the network refuses to start. */
    rwal_node *node = NULL;
    CHECK_STATUS(rwal_node_open(opts, &node), RWAL_ERR_INVALID_ARGUMENT);
    CHECK(node == NULL);
    /* A recovery mode that drops records is refused for a replica. */
    static const uint8_t secret[] = "0123456789abcdef0123";
    CHECK_STATUS(rwal_node_options_set_cluster(opts, 1, secret, sizeof secret - 1), RWAL_OK);
    rwal_options *log_opts = rwal_options_new();
    CHECK_STATUS(rwal_options_set_recovery_mode(log_opts, RWAL_RECOVERY_POINT_IN_TIME), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_log_options(opts, log_opts), RWAL_OK);
    CHECK_STATUS(rwal_node_open(opts, &node), RWAL_ERR_INVALID_ARGUMENT);
    char msg[256];
    rwal_last_error(msg, sizeof msg);
    CHECK(strstr(msg, "recovery_mode") != NULL);
    rwal_options_free(log_opts);
    /* Founding is asked for: a directory without a log, and no voters given, is refused, and
     * nothing is created in it. Voters given and cleared again are none. */
    const uint64_t founders[1] = {1};
    CHECK_STATUS(rwal_node_options_set_voters(opts, founders, 1, false), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_voters(opts, NULL, 0, false), RWAL_OK);
    log_opts = rwal_options_new();
    CHECK_STATUS(rwal_node_options_set_log_options(opts, log_opts), RWAL_OK);
    rwal_options_free(log_opts);
    CHECK_STATUS(rwal_node_open(opts, &node), RWAL_ERR_INVALID_ARGUMENT);
    rwal_last_error(msg, sizeof msg);
    CHECK(strstr(msg, "holds no log") != NULL);
    struct stat created;
    CHECK(stat(path, &created) != 0);
    /* A port another socket holds is the system's refusal, RWAL_ERR_IO (it was
     * RWAL_ERR_INVALID_ARGUMENT), naming the address. */
    int held = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in bound = {0};
    bound.sin_family = AF_INET;
    bound.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t bound_len = sizeof bound;
    CHECK(held >= 0 && bind(held, (struct sockaddr *)&bound, sizeof bound) == 0 &&
          listen(held, 1) == 0 && getsockname(held, (struct sockaddr *)&bound, &bound_len) == 0);
    char in_use[32];
    snprintf(in_use, sizeof in_use, "127.0.0.1:%u", (unsigned)ntohs(bound.sin_port));
    CHECK_STATUS(rwal_node_options_set_listen(opts, in_use), RWAL_OK);
    CHECK_STATUS(rwal_node_open(opts, &node), RWAL_ERR_IO);
    rwal_last_error(msg, sizeof msg);
    CHECK(strstr(msg, in_use) != NULL);
    CHECK(node == NULL);
    close(held);
    /* The engine's apply, snapshot and restore go together: a missing one is named. */
    struct engine e = {0};
    CHECK_STATUS(rwal_node_options_set_callbacks(opts, on_apply, NULL, on_restore, NULL, &e),
                 RWAL_ERR_INVALID_ARGUMENT);
    rwal_last_error(msg, sizeof msg);
    CHECK(strstr(msg, "snapshot is NULL") != NULL);
    CHECK_STATUS(rwal_node_options_set_callbacks(opts, NULL, NULL, NULL, on_leader, &e), RWAL_OK);
    rwal_node_options_free(opts);
    rwal_node_options_free(NULL);
}

/* Messages of the log callback: those that report a reopened node's log (its directory,
 * "opened, LSNs", and records verified, for there were some), and those that report the
 * node's failure at RWAL_LOG_ERROR. Written under the library's callback lock, read after the
 * callback is unset, which takes that lock too. */
static const char *opened_dir;
static int opened_reports;
static int failure_reports;

static void on_log(rwal_log_level level, const char *message, void *userdata) {
    (void)userdata;
    if (level == RWAL_LOG_INFO && opened_dir != NULL && strstr(message, opened_dir) != NULL &&
        strstr(message, ": opened, LSNs ") != NULL && strstr(message, " 0 records") == NULL)
        opened_reports++;
    if (level == RWAL_LOG_ERROR && strstr(message, "the node failed and stopped") != NULL &&
        strstr(message, "apply callback failed at LSN") != NULL)
        failure_reports++;
}

/* Opens node `id` in `path` with `e` as its engine, in segments of 1 MiB: node 1 founds a
 * cluster of one, another joins (it waits for the leader to add it). */
static rwal_node *open_node(const char *path, uint64_t id, struct engine *e) {
    static const uint8_t secret[] = "a secret for a node of its own";
    const uint64_t voters[1] = {1};
    rwal_node_options *opts = NULL;
    CHECK_STATUS(rwal_node_options_new(id, path, &opts), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_cluster(opts, 43, secret, sizeof secret - 1), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_listen(opts, "127.0.0.1:0"), RWAL_OK);
    if (id == 1)
        CHECK_STATUS(rwal_node_options_set_voters(opts, voters, 1, false), RWAL_OK);
    else
        CHECK_STATUS(rwal_node_options_set_voters(opts, NULL, 0, true), RWAL_OK);
    rwal_options *log_opts = rwal_options_new();
    CHECK_STATUS(rwal_options_set_segment_size(log_opts, 1 << 20), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_log_options(opts, log_opts), RWAL_OK);
    rwal_options_free(log_opts);
    CHECK_STATUS(rwal_node_options_set_tick_ms(opts, 50), RWAL_OK);
    CHECK_STATUS(rwal_node_options_set_callbacks(opts, on_apply, on_snapshot, on_restore,
                                                 on_leader, e),
                 RWAL_OK);
    rwal_node *node = NULL;
    CHECK_STATUS(rwal_node_open(opts, &node), RWAL_OK);
    rwal_node_options_free(opts);
    return node;
}

/* Opens node 1 of a cluster of one in `path` with `e` as its engine. */
static rwal_node *open_alone(const char *path, struct engine *e) { return open_node(path, 1, e); }

/* Proposes on `node` until it leads and the record commits; returns its LSN (0: it never did). */
static uint64_t propose_leading(rwal_node *node, const uint8_t *data, size_t len) {
    uint64_t lsn = 0, epoch = 0;
    rwal_status st = RWAL_ERR_NOT_LEADER;
    for (int waited = 0; waited < WAIT_MS && st == RWAL_ERR_NOT_LEADER; waited += 10) {
        st = rwal_node_propose_and_wait(node, data, len, WAIT_MS, &lsn, &epoch);
        if (st == RWAL_ERR_NOT_LEADER) sleep_ms(10);
    }
    CHECK_STATUS(st, RWAL_OK);
    return st == RWAL_OK ? lsn : 0;
}

/* A learner added after the leader compacted its log is seeded by a snapshot: the leader's
 * snapshot callback hands its engine's state over in place (the first hand-over is abandoned),
 * the learner's restore callback gets exactly that, and the records after it come by the log.
 * The node releases every state handed over. */
static void test_learner_by_snapshot(const char *dir) {
    char path[512], joining[512];
    snprintf(path, sizeof path, "%s/seeding", dir);
    snprintf(joining, sizeof joining, "%s/joining", dir);
    struct engine seeding = {0}, learner = {0};
    pthread_mutex_init(&seeding.lock, NULL);
    pthread_mutex_init(&learner.lock, NULL);
    seeding.lend_state = 1;
    rwal_node *leader = open_node(path, 1, &seeding);
    if (leader == NULL) return;
    /* Over two segments of 1 MiB, so that compaction can drop the first. */
    static uint8_t big[100000];
    uint64_t last = 0;
    for (int r = 0; r < 24; r++) {
        memset(big, r + 1, sizeof big);
        last = propose_leading(leader, big, sizeof big);
    }
    CHECK(last > 0);
    rwal_node_status s;
    CHECK_STATUS(rwal_node_status_get(leader, &s), RWAL_OK);
    pthread_mutex_lock(&seeding.lock);
    uint64_t state[2] = {seeding.count, seeding.sum};
    pthread_mutex_unlock(&seeding.lock);
    CHECK_STATUS(rwal_node_checkpoint(leader, s.applied_lsn, (const uint8_t *)state, sizeof state),
                 RWAL_OK);
    for (int waited = 0; waited < WAIT_MS && s.first_lsn <= 1; waited += 10) {
        CHECK_STATUS(rwal_node_compact(leader), RWAL_OK);
        CHECK_STATUS(rwal_node_status_get(leader, &s), RWAL_OK);
        if (s.first_lsn <= 1) sleep_ms(10);
    }
    CHECK(s.first_lsn > 1);

    rwal_node *newcomer = open_node(joining, 2, &learner);
    if (newcomer == NULL) return;
    char leader_addr[64], newcomer_addr[64];
    size_t len = 0;
    CHECK_STATUS(rwal_node_local_addr(leader, leader_addr, sizeof leader_addr, &len), RWAL_OK);
    CHECK_STATUS(rwal_node_local_addr(newcomer, newcomer_addr, sizeof newcomer_addr, &len),
                 RWAL_OK);
    CHECK_STATUS(rwal_node_add_peer(newcomer, 1, leader_addr), RWAL_OK);
    uint64_t change = 0, change_epoch = 0;
    CHECK_STATUS(rwal_node_change_membership(leader, RWAL_MEMBERSHIP_ADD_LEARNER, 2,
                                             newcomer_addr, &change, &change_epoch),
                 RWAL_OK);
    /* Its LSN and epoch say when the change is made: no new leader replaced it here. */
    CHECK(change > 0 && change_epoch > 0);
    CHECK_STATUS(rwal_node_wait_committed(leader, change, change_epoch, WAIT_MS), RWAL_OK);
    CHECK_STATUS(rwal_node_wait_committed(leader, change, change_epoch + 1, WAIT_MS),
                 RWAL_ERR_SUPERSEDED);
    /* Added again at the same address: the link to the learner stays as it is. */
    CHECK_STATUS(rwal_node_add_peer(leader, 2, newcomer_addr), RWAL_OK);
    memset(big, 0xEE, 1000);
    last = propose_leading(leader, big, 1000);
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        CHECK_STATUS(rwal_node_status_get(newcomer, &s), RWAL_OK);
        if (s.applied_lsn >= last) break;
        sleep_ms(10);
    }
    CHECK(last > 0 && s.applied_lsn >= last);
    CHECK(s.learners == 1 && s.voters == 1);
    /* The member ids, on both: voter 1, learner 2. */
    for (int i = 0; i < 2; i++) {
        rwal_node *member = i == 0 ? leader : newcomer;
        uint64_t ids[4] = {0};
        size_t count = 0, voters = 99;
        CHECK_STATUS(rwal_node_members(member, NULL, 0, &count, &voters), RWAL_ERR_BUFFER_TOO_SMALL);
        CHECK(count == 2 && voters == 99);
        CHECK_STATUS(rwal_node_members(member, NULL, 4, &count, &voters), RWAL_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(rwal_node_members(member, ids, 1, &count, &voters), RWAL_ERR_BUFFER_TOO_SMALL);
        CHECK(ids[0] == 0);
        CHECK_STATUS(rwal_node_members(member, ids, 4, &count, &voters), RWAL_OK);
        CHECK(count == 2 && voters == 1 && ids[0] == 1 && ids[1] == 2 && ids[2] == 0);
    }
    /* A change of nothing, and a demotion, are refused with the reason. */
    CHECK_STATUS(rwal_node_change_membership(leader, RWAL_MEMBERSHIP_ADD_LEARNER, 2, NULL, &change,
                                             &change_epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    char why[256];
    rwal_last_error(why, sizeof why);
    CHECK(strstr(why, "a learner already") != NULL);
    CHECK_STATUS(rwal_node_change_membership(leader, RWAL_MEMBERSHIP_REMOVE, 7, NULL, &change,
                                             &change_epoch),
                 RWAL_ERR_INVALID_ARGUMENT);
    rwal_last_error(why, sizeof why);
    CHECK(strstr(why, "not a member") != NULL);
    pthread_mutex_lock(&seeding.lock);
    pthread_mutex_lock(&learner.lock);
    CHECK(seeding.snapshots >= 2 && seeding.lent == seeding.snapshots);
    CHECK(learner.restores >= 1);
    CHECK(learner.count == seeding.count && learner.sum == seeding.sum);
    CHECK(learner.count == 25);
    pthread_mutex_unlock(&learner.lock);
    pthread_mutex_unlock(&seeding.lock);
    /* A learner that never answers never catches up: its promotion is RWAL_ERR_BUSY (ask
     * again later), not RWAL_ERR_INVALID_ARGUMENT (asking again cannot help). */
    CHECK_STATUS(rwal_node_change_membership(leader, RWAL_MEMBERSHIP_ADD_LEARNER, 3, "127.0.0.1:9",
                                             &change, &change_epoch),
                 RWAL_OK);
    CHECK_STATUS(rwal_node_wait_committed(leader, change, change_epoch, WAIT_MS), RWAL_OK);
    /* Committed is not yet applied: until then the refusal is the one-change-at-a-time one. */
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        CHECK_STATUS(rwal_node_status_get(leader, &s), RWAL_OK);
        if (s.applied_lsn >= change) break;
        sleep_ms(10);
    }
    CHECK(s.applied_lsn >= change);
    CHECK_STATUS(rwal_node_change_membership(leader, RWAL_MEMBERSHIP_ADD_VOTER, 3, NULL, &change,
                                             &change_epoch),
                 RWAL_ERR_BUSY);
    rwal_last_error(why, sizeof why);
    CHECK(strstr(why, "learner 3 has replicated to 0") != NULL);
    CHECK_STATUS(rwal_node_close(newcomer), RWAL_OK);
    CHECK_STATUS(rwal_node_close(leader), RWAL_OK);
    CHECK(seeding.released == seeding.lent);
    pthread_mutex_destroy(&seeding.lock);
    pthread_mutex_destroy(&learner.lock);
}

/* An engine that cannot apply a committed record stops its node; closing it reports why and
 * closes the log under a live reader, so the directory opens again at once. */
static void test_engine_failure(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/refusing", dir);
    struct engine e = {0};
    pthread_mutex_init(&e.lock, NULL);
    rwal_node *node = open_alone(path, &e);
    if (node == NULL) return;
    uint64_t lsn = 0, epoch = 0;
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        rwal_status st = rwal_node_propose_and_wait(node, (const uint8_t *)"fine", 4, WAIT_MS,
                                                    &lsn, &epoch);
        if (st == RWAL_OK) break;
        CHECK(st == RWAL_ERR_NOT_LEADER); /* not leading yet */
        if (st != RWAL_ERR_NOT_LEADER) break; /* each try waits WAIT_MS: no more of them */
        sleep_ms(10);
    }
    CHECK(lsn > 0);
    rwal_node_reader *reader = NULL;
    CHECK_STATUS(rwal_node_reader_open(node, lsn, &reader), RWAL_OK);
    /* Committed before the engine refused it: the proposer is told it committed. The failure
     * that follows is said at RWAL_LOG_ERROR when it happens. */
    CHECK_STATUS(rwal_set_log_callback(on_log, RWAL_LOG_ERROR, NULL), RWAL_OK);
    uint64_t fine = lsn;
    CHECK_STATUS(rwal_node_propose_and_wait(node, (const uint8_t *)"refused", 7, WAIT_MS, &lsn,
                                            &epoch),
                 RWAL_OK);
    CHECK(lsn == fine + 1);
    /* The failed apply then stops the node: its calls are refused. */
    rwal_status barrier = RWAL_OK;
    for (int waited = 0; waited < WAIT_MS && barrier == RWAL_OK; waited += 10) {
        uint64_t read_point = 0;
        barrier = rwal_node_read_barrier(node, WAIT_MS, &read_point);
        if (barrier == RWAL_OK) sleep_ms(10);
    }
    CHECK(barrier == RWAL_ERR_CLOSED || barrier == RWAL_ERR_REPLICATION);
    uint64_t r_lsn, r_epoch;
    uint32_t kind;
    const uint8_t *data;
    size_t r_len;
    /* A second reader read to the commit LSN while the failed node's log is still open: both
     * committed records are there. */
    rwal_node_reader *at_end = NULL;
    CHECK_STATUS(rwal_node_reader_open(node, fine, &at_end), RWAL_OK);
    int read = 0;
    rwal_status st_read;
    while ((st_read = rwal_node_reader_next(at_end, &r_lsn, &r_epoch, &kind, &data, &r_len)) ==
           RWAL_OK)
        read++;
    CHECK_STATUS(st_read, RWAL_END);
    CHECK(read == 2);
    /* A tailing reader there is told the node's failure at once, not left to its timeout. */
    CHECK_STATUS(rwal_node_reader_next_timeout(at_end, 60 * 1000, &r_lsn, &r_epoch, &kind, &data,
                                               &r_len),
                 RWAL_ERR_REPLICATION);
    CHECK_STATUS(rwal_node_close(node), RWAL_ERR_REPLICATION);
    CHECK_STATUS(rwal_set_log_callback(NULL, 0, NULL), RWAL_OK);
    CHECK(failure_reports == 1);
    char msg[256];
    rwal_last_error(msg, sizeof msg);
    CHECK(strstr(msg, "apply callback failed at LSN") != NULL && strstr(msg, "returned -5"));
    CHECK_STATUS(rwal_node_reader_next(reader, &r_lsn, &r_epoch, &kind, &data, &r_len),
                 RWAL_ERR_CLOSED);
    /* At the commit LSN too: not RWAL_END, as if the node still ran. */
    CHECK_STATUS(rwal_node_reader_next(at_end, &r_lsn, &r_epoch, &kind, &data, &r_len),
                 RWAL_ERR_CLOSED);
    rwal_node_reader_free(at_end);
    /* The reader is still alive, and the directory opens again; the open reports what its
     * recovery found to the log callback, as rwal_open does. */
    opened_dir = path;
    CHECK_STATUS(rwal_set_log_callback(on_log, RWAL_LOG_INFO, NULL), RWAL_OK);
    node = open_alone(path, &e);
    CHECK_STATUS(rwal_set_log_callback(NULL, 0, NULL), RWAL_OK);
    CHECK(opened_reports == 1);
    rwal_node_reader_free(reader);
    if (node == NULL) return;
    /* The committed record is applied again once the node leads, and refused again: nothing
     * proposed after it is ever acknowledged. */
    rwal_status st = RWAL_ERR_NOT_LEADER;
    for (int waited = 0; waited < WAIT_MS && st == RWAL_ERR_NOT_LEADER; waited += 10) {
        st = rwal_node_propose_and_wait(node, (const uint8_t *)"later", 5, WAIT_MS, &lsn, &epoch);
        if (st == RWAL_ERR_NOT_LEADER) sleep_ms(10);
    }
    CHECK_STATUS(st, RWAL_ERR_CLOSED);
    CHECK_STATUS(rwal_node_close(node), RWAL_ERR_REPLICATION);
    pthread_mutex_destroy(&e.lock);
}

/* A thread of the engine waiting for an LSN the node will not reach before it stops; says
 * (under `lock`) when it is about to call. */
struct waiter {
    rwal_node *node;
    uint64_t lsn;
    uint64_t epoch;
    pthread_mutex_t lock;
    int calling;
    rwal_status status;
};

static void *wait_far_ahead(void *arg) {
    struct waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    w->calling = 1;
    pthread_mutex_unlock(&w->lock);
    rwal_status st = rwal_node_wait_committed(w->node, w->lsn, w->epoch, WAIT_MS);
    pthread_mutex_lock(&w->lock);
    w->status = st;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* A callback that calls the functions waiting for its node's thread (propose, read barrier,
 * compact, close, shutdown) gets RWAL_ERR_INVALID_ARGUMENT at once; the close there closes
 * nothing, and the node goes on. Before, the node waited for itself forever, and so did
 * rwal_node_close. Then the timeouts of propose-and-wait, and a shutdown under a waiting
 * thread. */
static void test_reentry(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/reentrant", dir);
    struct engine e = {0};
    pthread_mutex_init(&e.lock, NULL);
    rwal_node *node = open_alone(path, &e);
    if (node == NULL) return;
    pthread_mutex_lock(&e.lock);
    e.node = node;
    pthread_mutex_unlock(&e.lock);
    uint64_t lsn = 0, epoch = 0;
    rwal_status st = RWAL_ERR_NOT_LEADER;
    for (int waited = 0; waited < WAIT_MS && st == RWAL_ERR_NOT_LEADER; waited += 10) {
        st = rwal_node_propose_and_wait(node, (const uint8_t *)"call back", 9, WAIT_MS, &lsn,
                                        &epoch);
        if (st == RWAL_ERR_NOT_LEADER) sleep_ms(10);
    }
    CHECK_STATUS(st, RWAL_OK);
    pthread_mutex_lock(&e.lock);
    CHECK(e.reentered);
    CHECK_STATUS(e.reentry[0], RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(e.reentry[1], RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(e.reentry[2], RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(e.reentry[3], RWAL_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(e.reentry[4], RWAL_ERR_INVALID_ARGUMENT);
    pthread_mutex_unlock(&e.lock);
    CHECK_STATUS(rwal_node_propose_and_wait(node, (const uint8_t *)"after", 5, WAIT_MS, &lsn,
                                            &epoch),
                 RWAL_OK);
    /* A propose-and-wait that times out after the record was proposed writes what to wait
     * on: its apply is held here, and the commit is published after it. */
    uint64_t slow_lsn = 0, slow_epoch = 0;
    CHECK_STATUS(rwal_node_propose_and_wait(node, (const uint8_t *)"slow", 4, 1000, &slow_lsn,
                                            &slow_epoch),
                 RWAL_ERR_TIMEOUT);
    CHECK(slow_lsn > lsn && slow_epoch == epoch);
    /* The node's thread is still held in that apply: a record proposed now is not taken in
     * time, which the zeros say, and it is never proposed (the next LSN shows). */
    uint64_t dropped_lsn = 99, dropped_epoch = 99;
    CHECK_STATUS(rwal_node_propose_and_wait(node, (const uint8_t *)"given up", 8, 200,
                                            &dropped_lsn, &dropped_epoch),
                 RWAL_ERR_TIMEOUT);
    CHECK(dropped_lsn == 0 && dropped_epoch == 0);
    release_gate();
    CHECK_STATUS(rwal_node_wait_committed(node, slow_lsn, slow_epoch, WAIT_MS), RWAL_OK);
    CHECK_STATUS(rwal_node_propose_and_wait(node, (const uint8_t *)"next", 4, WAIT_MS, &lsn,
                                            &epoch),
                 RWAL_OK);
    CHECK(lsn == slow_lsn + 1);
    /* An engine's thread waiting on the node when it is shut down gets RWAL_ERR_CLOSED, not
     * its timeout (whether it was already waiting or called just after); the handle stays
     * valid until it is closed. */
    struct waiter w = {.node = node, .lsn = lsn + 1000, .epoch = epoch, .status = 12345};
    pthread_mutex_init(&w.lock, NULL);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, wait_far_ahead, &w) == 0);
    /* Most likely waiting by the time the stop comes (either way it must get CLOSED). */
    for (int waited = 0; waited < WAIT_MS; waited += 10) {
        pthread_mutex_lock(&w.lock);
        int calling = w.calling;
        pthread_mutex_unlock(&w.lock);
        if (calling) break;
        sleep_ms(10);
    }
    sleep_ms(100);
    CHECK_STATUS(rwal_node_shutdown(node), RWAL_OK);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_STATUS(w.status, RWAL_ERR_CLOSED);
    pthread_mutex_destroy(&w.lock);
    CHECK_STATUS(rwal_node_propose(node, (const uint8_t *)"late", 4, &lsn, &epoch),
                 RWAL_ERR_CLOSED);
    /* Not proposed: the outputs say so, whatever the status. */
    uint64_t late_lsn = 99, late_epoch = 99;
    CHECK_STATUS(rwal_node_propose_and_wait(node, (const uint8_t *)"late", 4, 100, &late_lsn,
                                            &late_epoch),
                 RWAL_ERR_CLOSED);
    CHECK(late_lsn == 0 && late_epoch == 0);
    CHECK_STATUS(rwal_node_shutdown(node), RWAL_OK);
    CHECK_STATUS(rwal_node_close(node), RWAL_OK);
    pthread_mutex_destroy(&e.lock);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    test_bad_options(argv[1]);
    test_engine_failure(argv[1]);
    test_reentry(argv[1]);
    test_learner_by_snapshot(argv[1]);
    test_cluster(argv[1]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
