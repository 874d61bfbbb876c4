/* rdfetch: replay's native fetch loop over the librdkafka that confluent-kafka ships.
 *
 * Why: a bulk read through confluent-kafka builds a Python Message object per record and calls
 * value(), key(), timestamp(), headers() on each, all under the GIL -- ~1 us of GIL-held work per
 * record, which bounded replay on two cores (bench/README.md). Here one call consumes a chunk and
 * writes it into columns the caller allocated (values packed one per line, keys and headers as
 * Arrow-style offset buffers, offsets, timestamps), with the GIL released for the whole call (ctypes).
 *
 * The prototypes below are librdkafka's public, ABI-stable API (rdkafka.h), declared here so the
 * build needs no headers: only a C compiler and the shared library confluent-kafka already loaded.
 * A chunk is taken in two calls: kl_poll consumes and reports sizes, the caller allocates exactly,
 * kl_fill copies and releases the messages. Error messages (partition EOF, out of range...) are
 * returned as events beside the data.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_topic_partition_list_s rd_kafka_topic_partition_list_t;
typedef struct rd_kafka_headers_s rd_kafka_headers_t;
typedef struct rd_kafka_message_s {
    int err;
    void *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rd_kafka_message_t;

rd_kafka_conf_t *rd_kafka_conf_new(void);
int rd_kafka_conf_set(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
void rd_kafka_conf_set_log_cb(rd_kafka_conf_t *, void (*)(const rd_kafka_t *, int, const char *, const char *));
void rd_kafka_conf_destroy(rd_kafka_conf_t *);
rd_kafka_t *rd_kafka_new(int, rd_kafka_conf_t *, char *, size_t);
int rd_kafka_poll_set_consumer(rd_kafka_t *);
rd_kafka_topic_partition_list_t *rd_kafka_topic_partition_list_new(int);
void *rd_kafka_topic_partition_list_add(rd_kafka_topic_partition_list_t *, const char *, int32_t);
int rd_kafka_topic_partition_list_set_offset(rd_kafka_topic_partition_list_t *, const char *, int32_t, int64_t);
void rd_kafka_topic_partition_list_destroy(rd_kafka_topic_partition_list_t *);
int rd_kafka_assign(rd_kafka_t *, const rd_kafka_topic_partition_list_t *);
int rd_kafka_pause_partitions(rd_kafka_t *, rd_kafka_topic_partition_list_t *);
rd_kafka_queue_t *rd_kafka_queue_get_consumer(rd_kafka_t *);
ssize_t rd_kafka_consume_batch_queue(rd_kafka_queue_t *, int, rd_kafka_message_t **, size_t);
int64_t rd_kafka_message_timestamp(const rd_kafka_message_t *, int *);
int rd_kafka_message_headers(const rd_kafka_message_t *, rd_kafka_headers_t **);
int rd_kafka_header_get_all(const rd_kafka_headers_t *, size_t, const char **, const void **, size_t *);
void rd_kafka_message_destroy(rd_kafka_message_t *);
const char *rd_kafka_err2str(int);
int rd_kafka_consumer_close(rd_kafka_t *);
void rd_kafka_queue_destroy(rd_kafka_queue_t *);
void rd_kafka_destroy(rd_kafka_t *);

#define RD_KAFKA_CONSUMER 1
#define REST_WAIT_MS 10

typedef struct {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    rd_kafka_message_t **msgs;
    size_t cap;
    size_t n;
} kl_fetcher;

/* What kl_poll found: sizes for the caller to allocate. */
typedef struct {
    int64_t data;         /* data messages */
    int64_t value_bytes;  /* packed values: each value plus its newline */
    int64_t key_bytes;
    int64_t headers;      /* header fields over all messages */
    int64_t header_name_bytes;
    int64_t header_value_bytes;
    int64_t events;       /* error messages: partition EOF, out of range, ... */
} kl_sizes;

/* Where kl_fill writes; a NULL column is skipped (a projected read). */
typedef struct {
    uint8_t *values;      /* value_bytes */
    int32_t *value_len;   /* data; -1 for a null value (it takes only its newline) */
    int32_t *partition;   /* data */
    int64_t *offset;      /* data */
    int64_t *timestamp;   /* data, or NULL */
    uint8_t *keys;        /* key_bytes */
    int64_t *key_off;     /* data + 1, or NULL: keys not taken */
    uint8_t *key_valid;   /* data */
    int32_t *header_off;  /* data + 1, or NULL: message i's fields are [header_off[i], header_off[i+1]) */
    uint8_t *header_valid;/* data: 0 when the message has no headers */
    uint8_t *header_names;
    int64_t *header_name_off;   /* headers + 1 */
    uint8_t *header_values;
    int64_t *header_value_off;  /* headers + 1 */
    uint8_t *header_value_valid;/* headers */
    int32_t *event_err;   /* events */
    int32_t *event_partition;
    int64_t *event_offset;
    char *event_text;     /* the first event's text */
    int32_t event_text_size;
} kl_out;

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk; (void)level; (void)fac; (void)buf;  /* like the Python path: librdkafka's chatter is dropped */
}

kl_fetcher *kl_open(int nconf, const char **names, const char **values, char *errstr, int errsize) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 0; i < nconf; i++) {
        if (rd_kafka_conf_set(conf, names[i], values[i], errstr, (size_t)errsize) != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, (size_t)errsize);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    kl_fetcher *f = calloc(1, sizeof(kl_fetcher));
    f->rk = rk;
    f->queue = rd_kafka_queue_get_consumer(rk);
    return f;
}

static rd_kafka_topic_partition_list_t *partition_list(const char *topic, int n, const int32_t *parts,
                                                       const int64_t *offsets) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++) {
        rd_kafka_topic_partition_list_add(list, topic, parts[i]);
        if (offsets != NULL)
            rd_kafka_topic_partition_list_set_offset(list, topic, parts[i], offsets[i]);
    }
    return list;
}

int kl_assign(kl_fetcher *f, const char *topic, int n, const int32_t *parts, const int64_t *offsets) {
    rd_kafka_topic_partition_list_t *list = partition_list(topic, n, parts, offsets);
    int err = rd_kafka_assign(f->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

int kl_pause(kl_fetcher *f, const char *topic, int32_t partition) {
    rd_kafka_topic_partition_list_t *list = partition_list(topic, 1, &partition, NULL);
    int err = rd_kafka_pause_partitions(f->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    return err;
}

const char *kl_err2str(int err) { return rd_kafka_err2str(err); }

static void release(kl_fetcher *f) {
    for (size_t i = 0; i < f->n; i++)
        rd_kafka_message_destroy(f->msgs[i]);
    f->n = 0;
}

/* Consume up to max messages (waiting up to timeout_ms for the first) and size them. */
int64_t kl_poll(kl_fetcher *f, int max, int timeout_ms, int want_headers, kl_sizes *sizes) {
    release(f);
    if ((size_t)max > f->cap) {
        free(f->msgs);
        f->msgs = malloc(sizeof(rd_kafka_message_t *) * (size_t)max);
        f->cap = (size_t)max;
    }
    /* librdkafka waits until the whole batch is there or the timeout passes: wait that long for
     * the first message only, then briefly for the rest, so the end of a read (nothing more will
     * come) costs milliseconds, not the timeout. */
    ssize_t got = rd_kafka_consume_batch_queue(f->queue, timeout_ms, f->msgs, 1);
    memset(sizes, 0, sizeof(*sizes));
    if (got < 0)
        return got;
    if (got == 1 && max > 1) {
        ssize_t more = rd_kafka_consume_batch_queue(f->queue, REST_WAIT_MS, f->msgs + 1, (size_t)max - 1);
        if (more > 0)
            got += more;
    }
    f->n = (size_t)got;
    for (size_t i = 0; i < f->n; i++) {
        rd_kafka_message_t *m = f->msgs[i];
        if (m->err) {
            sizes->events++;
            continue;
        }
        sizes->data++;
        sizes->value_bytes += (int64_t)(m->payload ? m->len : 0) + 1;
        sizes->key_bytes += m->key ? (int64_t)m->key_len : 0;
        rd_kafka_headers_t *hdrs;
        if (want_headers && rd_kafka_message_headers(m, &hdrs) == 0) {
            const char *name;
            const void *value;
            size_t size;
            for (size_t h = 0; rd_kafka_header_get_all(hdrs, h, &name, &value, &size) == 0; h++) {
                sizes->headers++;
                sizes->header_name_bytes += (int64_t)strlen(name);
                sizes->header_value_bytes += value ? (int64_t)size : 0;
            }
        }
    }
    return got;
}

static int64_t fill_headers(const rd_kafka_message_t *m, kl_out *o, int64_t i, int64_t h) {
    rd_kafka_headers_t *hdrs;
    o->header_off[i] = (int32_t)h;
    o->header_valid[i] = rd_kafka_message_headers(m, &hdrs) == 0;
    if (!o->header_valid[i])
        return h;
    const char *name;
    const void *value;
    size_t size;
    for (size_t k = 0; rd_kafka_header_get_all(hdrs, k, &name, &value, &size) == 0; k++, h++) {
        size_t name_len = strlen(name);
        memcpy(o->header_names + o->header_name_off[h], name, name_len);
        o->header_name_off[h + 1] = o->header_name_off[h] + (int64_t)name_len;
        o->header_value_valid[h] = value != NULL;
        size_t vlen = value ? size : 0;
        if (vlen)
            memcpy(o->header_values + o->header_value_off[h], value, vlen);
        o->header_value_off[h + 1] = o->header_value_off[h] + (int64_t)vlen;
    }
    return h;
}

static void fill_event(const rd_kafka_message_t *m, kl_out *o, int64_t e) {
    o->event_err[e] = m->err;
    o->event_partition[e] = m->partition;
    o->event_offset[e] = m->offset;
    if (e == 0 && o->event_text_size > 0) {  /* the payload of an error message is its text */
        size_t n = m->payload ? m->len : 0;
        if (n >= (size_t)o->event_text_size)
            n = (size_t)o->event_text_size - 1;
        if (n)
            memcpy(o->event_text, m->payload, n);
        o->event_text[n] = 0;
    }
}

static int64_t fill_one(const rd_kafka_message_t *m, kl_out *o, int64_t d, int64_t *vpos, int64_t h) {
    size_t len = m->payload ? m->len : 0;
    if (len)
        memcpy(o->values + *vpos, m->payload, len);
    *vpos += (int64_t)len;
    o->values[(*vpos)++] = '\n';
    o->value_len[d] = m->payload ? (int32_t)len : -1;
    o->partition[d] = m->partition;
    o->offset[d] = m->offset;
    if (o->timestamp) {
        int kind;
        o->timestamp[d] = rd_kafka_message_timestamp(m, &kind);
    }
    if (o->key_off) {
        size_t klen = m->key ? m->key_len : 0;
        if (klen)
            memcpy(o->keys + o->key_off[d], m->key, klen);
        o->key_off[d + 1] = o->key_off[d] + (int64_t)klen;
        o->key_valid[d] = m->key != NULL;
    }
    return o->header_off ? fill_headers(m, o, d, h) : h;
}

/* Copy the polled messages into the caller's columns, grouped by partition (in the order the
 * partitions first appear; offset order within each, as consumed), then release them. Grouping
 * lets the caller cut a chunk into per-partition slices without copying. */
void kl_fill(kl_fetcher *f, kl_out *o) {
    int64_t d = 0, e = 0, vpos = 0, h = 0;
    int32_t groups[64];
    int ngroups = 0, spill = 0;
    if (o->key_off) o->key_off[0] = 0;
    if (o->header_off) o->header_name_off[0] = o->header_value_off[0] = 0;
    for (size_t i = 0; i < f->n; i++) {  /* events, and the partitions present */
        rd_kafka_message_t *m = f->msgs[i];
        if (m->err) {
            fill_event(m, o, e++);
            continue;
        }
        int g = 0;
        while (g < ngroups && groups[g] != m->partition)
            g++;
        if (g == ngroups) {
            if (ngroups < 64)
                groups[ngroups++] = m->partition;
            else
                spill = 1;
        }
    }
    for (int g = 0; g < ngroups; g++)
        for (size_t i = 0; i < f->n; i++)
            if (!f->msgs[i]->err && f->msgs[i]->partition == groups[g])
                h = fill_one(f->msgs[i], o, d++, &vpos, h);
    if (spill) {  /* over 64 partitions in one chunk: the rest in consumed order */
        for (size_t i = 0; i < f->n; i++) {
            rd_kafka_message_t *m = f->msgs[i];
            int g = 0;
            while (g < ngroups && groups[g] != m->partition)
                g++;
            if (!m->err && g == ngroups)
                h = fill_one(m, o, d++, &vpos, h);
        }
    }
    if (o->header_off)
        o->header_off[d] = (int32_t)h;
    release(f);
}

void kl_close(kl_fetcher *f) {
    release(f);
    free(f->msgs);
    rd_kafka_queue_destroy(f->queue);
    rd_kafka_consumer_close(f->rk);
    rd_kafka_destroy(f->rk);
    free(f);
}
