/* The model file format: writer and validating reader.  Layout, field by
 * field, in docs/file-format.md.
 *
 * Every multi-byte field is little-endian and fixed-width; it is encoded and
 * decoded byte by byte through the le_* helpers below, so the code is correct
 * on a big-endian host too (bulk float arrays take a memcpy fast path only
 * where the host is little-endian).
 *
 * The reader trusts nothing: every size and count is bounded, every
 * offset/length pair is checked against the buffer with overflow-free
 * arithmetic before a byte behind it is read, every region is covered by a
 * crc32 (zlib) and every byte not in a region must be zero padding.  Memory
 * is allocated only after the sizes it implies are shown to fit inside the
 * buffer, so a hostile file cannot make the loader allocate more than a small
 * multiple of its own size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/io.h"
#include "model/model.h"

/* ------------------------------------------------------------------------ */
/* Little-endian encode/decode.                                              */
/* ------------------------------------------------------------------------ */

static void le_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void le_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le_put_i32(uint8_t *p, int32_t v)
{
    le_put_u32(p, (uint32_t)v);
}

static void le_put_f32(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    le_put_u32(p, bits);
}

static uint16_t le_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t le_u64(const uint8_t *p)
{
    return (uint64_t)le_u32(p) | ((uint64_t)le_u32(p + 4) << 32);
}

static int32_t le_i32(const uint8_t *p)
{
    uint32_t u = le_u32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);  /* two's complement on every host we build for */
    return v;
}

static int64_t le_i64(const uint8_t *p)
{
    uint64_t u = le_u64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static float le_f32(const uint8_t *p)
{
    uint32_t bits = le_u32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static int host_is_le(void)
{
    const uint32_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* zlib's crc32 takes uInt lengths: feed it in chunks. */
static uint32_t crc_update(uint32_t crc, const void *data, uint64_t len)
{
    const Bytef *p = data;
    uLong c = crc;
    while (len > 0) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

static uint32_t crc_of(const void *data, uint64_t len)
{
    return crc_update((uint32_t)crc32(0L, Z_NULL, 0), data, len);
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

static void tag_text(uint32_t tag, char out[5])
{
    for (int i = 0; i < 4; i++) {
        unsigned char c = (unsigned char)(tag >> (8 * i));
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[4] = '\0';
}

/* ------------------------------------------------------------------------ */
/* Tensor list: the one description of which arrays a file holds, shared by  */
/* writer and reader so they cannot disagree.                                */
/* ------------------------------------------------------------------------ */

typedef struct tdesc {
    char name[CN_FILE_NAME_LEN];
    uint32_t dtype;
    uint32_t ndim;
    uint64_t shape[4];
    uint64_t nbytes;
    void *data;       /* writer: source; reader: destination */
    uint64_t offset;  /* absolute file offset of the payload */
    uint32_t crc;
} tdesc;

/* Task whose head moments the optimizer state holds: the last task while
 * it trains (DENSE or RETRAIN), else 0. */
static int32_t optimizer_task(const conure_model *m)
{
    if (m->n_tasks < 1)
        return 0;
    int32_t ph = m->tasks[m->n_tasks - 1].phase;
    return (ph == CONURE_PHASE_DENSE || ph == CONURE_PHASE_RETRAIN) ? m->n_tasks : 0;
}

static conure_status td_add(tdesc *list, int *n, int cap, uint32_t dtype, void *data,
                            uint32_t ndim, const uint64_t *shape, const char *name)
{
    if (*n >= cap)
        return cn_fail(CONURE_E_INTERNAL, "model file: tensor list overflow");
    tdesc *d = &list[*n];
    memset(d, 0, sizeof *d);  /* NUL-pads the name */
    size_t len = strlen(name);
    if (len >= sizeof d->name)
        return cn_fail(CONURE_E_INTERNAL, "model file: tensor name '%s' too long", name);
    memcpy(d->name, name, len);
    d->dtype = dtype;
    d->ndim = ndim;
    uint64_t numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        d->shape[i] = shape[i];
        if (shape[i] != 0 && numel > UINT64_MAX / shape[i])
            return cn_fail(CONURE_E_INTERNAL, "model file: tensor size overflow");
        numel *= shape[i];
    }
    uint64_t esz = dtype == CN_DTYPE_F32 ? 4 : 1;
    if (numel > UINT64_MAX / esz)
        return cn_fail(CONURE_E_INTERNAL, "model file: tensor size overflow");
    d->nbytes = numel * esz;
    d->data = data;
    (*n)++;
    return CONURE_OK;
}

/* Builds the list for model m (tasks and heads in place).  with_opt adds
 * the optimizer tensors (of task opt_task's head if opt_task > 0). */
static conure_status build_tensor_list(const conure_model *m, int with_opt, int32_t opt_task,
                                       float *zeros, tdesc **out, int *n_out)
{
    int cap = m->n_tensors + 1 + 2 * m->n_tasks + 4;
    tdesc *list = calloc((size_t)cap, sizeof *list);
    if (!list)
        return cn_fail(CONURE_E_NOMEM, "model file: out of memory");
    int n = 0;
    conure_status st = CONURE_OK;
    const uint64_t C = (uint64_t)m->cfg.channels;

    for (int32_t i = 0; i < m->n_tensors && st == CONURE_OK; i++) {
        const cn_tensor *t = &m->tensors[i];
        uint64_t shape[4] = {0, 0, 0, 0};
        uint64_t numel = 1;
        if (t->ndim < 1 || t->ndim > 3 || memchr(t->name, '\0', sizeof t->name) == NULL) {
            st = cn_fail(CONURE_E_INTERNAL, "model file: layout entry %d is malformed", (int)i);
            break;
        }
        for (int32_t d = 0; d < t->ndim; d++) {
            shape[d] = (uint64_t)t->shape[d];
            numel *= shape[d];
        }
        if (numel != t->numel || t->offset + t->numel > m->n_backbone) {
            st = cn_fail(CONURE_E_INTERNAL, "model file: layout entry '%s' is inconsistent",
                         t->name);
            break;
        }
        st = td_add(list, &n, cap, CN_DTYPE_F32, m->params + t->offset, (uint32_t)t->ndim,
                    shape, t->name);
    }
    if (st == CONURE_OK) {
        uint64_t shape[2] = {(uint64_t)m->n_conv, (uint64_t)m->conv_numel};
        st = td_add(list, &n, cap, CN_DTYPE_U8, m->owner, 2, shape, "owner");
    }
    for (int32_t k = 1; k <= m->n_tasks && st == CONURE_OK; k++) {
        const cn_task *t = &m->tasks[k - 1];
        uint64_t nt = (uint64_t)t->n_targets;
        int has_bias = t->kind == CONURE_TASK_NEXT_ITEM;
        if (t->head_numel != nt * (C + (has_bias ? 1 : 0)) || !t->head) {
            st = cn_fail(CONURE_E_INTERNAL, "model file: task %d head is inconsistent", (int)k);
            break;
        }
        uint64_t shape[2] = {nt, C};
        char name[CN_FILE_NAME_LEN];
        snprintf(name, sizeof name, "task%d.head.weight", (int)k);
        st = td_add(list, &n, cap, CN_DTYPE_F32, t->head, 2, shape, name);
        snprintf(name, sizeof name, "task%d.head.bias", (int)k);
        if (st == CONURE_OK && has_bias)
            st = td_add(list, &n, cap, CN_DTYPE_F32, t->head + nt * C, 1, shape, name);
    }
    if (with_opt && st == CONURE_OK) {
        uint64_t shape[1] = {(uint64_t)m->n_backbone};
        /* a model that never trained since creation or load has no Adam
         * moments yet: they are zero */
        float *am = m->adam_m ? m->adam_m : zeros, *av = m->adam_v ? m->adam_v : zeros;
        if (!am || !av)
            st = cn_fail(CONURE_E_INTERNAL, "model file: no optimizer state to write");
        if (st == CONURE_OK)
            st = td_add(list, &n, cap, CN_DTYPE_F32, am, 1, shape, "optimizer.adam_m");
        if (st == CONURE_OK)
            st = td_add(list, &n, cap, CN_DTYPE_F32, av, 1, shape, "optimizer.adam_v");
        if (st == CONURE_OK && opt_task > 0) {
            const cn_task *t = &m->tasks[opt_task - 1];
            if (!t->head_m || !t->head_v) {
                st = cn_fail(CONURE_E_INTERNAL, "model file: task %d has no Adam moments",
                             (int)opt_task);
            } else {
                uint64_t hs[1] = {(uint64_t)t->head_numel};
                char name[CN_FILE_NAME_LEN];
                snprintf(name, sizeof name, "task%d.head.adam_m", (int)opt_task);
                st = td_add(list, &n, cap, CN_DTYPE_F32, t->head_m, 1, hs, name);
                snprintf(name, sizeof name, "task%d.head.adam_v", (int)opt_task);
                if (st == CONURE_OK)
                    st = td_add(list, &n, cap, CN_DTYPE_F32, t->head_v, 1, hs, name);
            }
        }
    }
    if (st != CONURE_OK) {
        free(list);
        return st;
    }
    *out = list;
    *n_out = n;
    return CONURE_OK;
}

/* ------------------------------------------------------------------------ */
/* Payload encode / checksum / decode.                                       */
/* ------------------------------------------------------------------------ */

#define STAGE_FLOATS 4096

static uint32_t payload_crc(const tdesc *d)
{
    if (d->dtype != CN_DTYPE_F32 || host_is_le())
        return crc_of(d->data, d->nbytes);
    uint8_t stage[STAGE_FLOATS * 4];
    const float *src = d->data;
    uint64_t n = d->nbytes / 4;
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (uint64_t i = 0; i < n;) {
        uint64_t k = n - i < STAGE_FLOATS ? n - i : STAGE_FLOATS;
        for (uint64_t j = 0; j < k; j++)
            le_put_f32(stage + 4 * j, src[i + j]);
        crc = crc_update(crc, stage, 4 * k);
        i += k;
    }
    return crc;
}

static conure_status payload_emit(const cn_io_sink *sink, const tdesc *d)
{
    if (d->dtype != CN_DTYPE_F32 || host_is_le()) {
        const uint8_t *p = d->data;
        uint64_t left = d->nbytes;
        while (left > 0) {  /* sinks take size_t; stay well below it */
            size_t k = left > (1u << 30) ? (size_t)(1u << 30) : (size_t)left;
            conure_status st = sink->write(sink->ctx, p, k);
            if (st != CONURE_OK)
                return st;
            p += k;
            left -= k;
        }
        return CONURE_OK;
    }
    uint8_t stage[STAGE_FLOATS * 4];
    const float *src = d->data;
    uint64_t n = d->nbytes / 4;
    for (uint64_t i = 0; i < n;) {
        uint64_t k = n - i < STAGE_FLOATS ? n - i : STAGE_FLOATS;
        for (uint64_t j = 0; j < k; j++)
            le_put_f32(stage + 4 * j, src[i + j]);
        conure_status st = sink->write(sink->ctx, stage, (size_t)(4 * k));
        if (st != CONURE_OK)
            return st;
        i += k;
    }
    return CONURE_OK;
}

static void payload_decode(const tdesc *d, const uint8_t *src)
{
    if (d->dtype != CN_DTYPE_F32 || host_is_le()) {
        memcpy(d->data, src, (size_t)d->nbytes);
        return;
    }
    float *dst = d->data;
    uint64_t n = d->nbytes / 4;
    for (uint64_t i = 0; i < n; i++)
        dst[i] = le_f32(src + 4 * i);
}

/* ------------------------------------------------------------------------ */
/* Writer.                                                                   */
/* ------------------------------------------------------------------------ */

#define MODL_FIXED 48
#define OPTM_SIZE 32

typedef struct sec_out {
    uint32_t tag, flags;
    uint64_t offset, length;
    const uint8_t *data;  /* encoded bytes (inside meta, or caller's extra) */
} sec_out;

static void encode_modl(const conure_model *m, uint8_t *p)
{
    const cn_config *c = &m->cfg;
    le_put_i32(p + 0, c->vocab_size);
    le_put_i32(p + 4, c->channels);
    le_put_i32(p + 8, c->kernel_width);
    le_put_i32(p + 12, c->max_len);
    le_put_i32(p + 16, c->n_blocks);
    le_put_i32(p + 20, c->block_order);
    le_put_i32(p + 24, c->training_mode);
    le_put_i32(p + 28, m->backbone_frozen);
    le_put_u64(p + 32, c->seed);
    le_put_f32(p + 40, c->init_std);
    le_put_u32(p + 44, 0);
    for (int32_t b = 0; b < c->n_blocks; b++)
        le_put_i32(p + MODL_FIXED + 4 * b, c->dilations[b]);
}

static void encode_task(const cn_task *t, uint8_t *p)
{
    le_put_i32(p + 0, t->kind);
    le_put_i32(p + 4, t->n_targets);
    le_put_i32(p + 8, t->phase);
    le_put_i32(p + 12, t->loss);
    le_put_i32(p + 16, t->negatives);
    le_put_f32(p + 20, t->lr);
    le_put_f32(p + 24, t->l2);
    le_put_f32(p + 28, t->rho);
    le_put_f32(p + 32, t->release_ratio);
    le_put_f32(p + 36, t->beta1);
    le_put_f32(p + 40, t->beta2);
    le_put_f32(p + 44, t->eps);
    le_put_u64(p + 48, (uint64_t)t->head_numel);
    le_put_f32(p + 56, t->dropout);
    le_put_u32(p + 60, t->tied ? CN_TASK_FLAG_TIED : 0u);
}

static const uint8_t zero_pad[CN_FILE_TENSOR_ALIGN];

conure_status cn_model_serialize_ex(const conure_model *m, uint32_t flags,
                                    const cn_io_write_opts *opts, const cn_io_sink *sink,
                                    size_t *size_out)
{
    if (flags & ~(uint32_t)CONURE_SAVE_OPTIMIZER)
        return cn_fail(CONURE_E_INVALID_ARG, "model_save: unknown flags 0x%x", (unsigned)flags);
    const int with_opt = (flags & CONURE_SAVE_OPTIMIZER) != 0;
    const int32_t opt_task = with_opt ? optimizer_task(m) : 0;
    const int n_extra = opts ? opts->n_extra : 0;
    if (n_extra < 0 || n_extra > CN_FILE_MAX_SECTIONS - 4)
        return cn_fail(CONURE_E_INTERNAL, "model_save: too many extra sections");

    float *zeros = NULL;
    if (with_opt && (!m->adam_m || !m->adam_v)) {
        zeros = cn_alloc(m->n_backbone, sizeof(float));
        if (!zeros)
            return cn_fail(CONURE_E_NOMEM, "model_save: out of memory");
    }
    tdesc *td = NULL;
    int n_td = 0;
    conure_status st = build_tensor_list(m, with_opt, opt_task, zeros, &td, &n_td);
    if (st != CONURE_OK) {
        cn_free(zeros);
        return st;
    }

    /* --- plan: header, section table, sections, tensors --- */
    sec_out sec[CN_FILE_MAX_SECTIONS];
    int n_sec = 0;
    sec[n_sec++] = (sec_out){CN_SEC_MODL, CN_SEC_F_REQUIRED, 0,
                             MODL_FIXED + 4 * (uint64_t)m->cfg.n_blocks, NULL};
    sec[n_sec++] = (sec_out){CN_SEC_TASK, CN_SEC_F_REQUIRED, 0,
                             8 + CN_FILE_TASK_ENTRY * (uint64_t)m->n_tasks, NULL};
    if (with_opt)
        sec[n_sec++] = (sec_out){CN_SEC_OPTM, CN_SEC_F_REQUIRED, 0, OPTM_SIZE, NULL};
    sec[n_sec++] = (sec_out){CN_SEC_TDIR, CN_SEC_F_REQUIRED, 0,
                             8 + CN_FILE_TDIR_ENTRY * (uint64_t)n_td, NULL};
    const int n_known = n_sec;
    for (int i = 0; i < n_extra; i++)
        sec[n_sec++] = (sec_out){opts->extra[i].tag, opts->extra[i].flags, 0, opts->extra[i].len,
                                 opts->extra[i].data};

    uint64_t pos = CN_FILE_HEADER_SIZE + CN_FILE_SECTION_ENTRY * (uint64_t)n_sec;
    for (int i = 0; i < n_sec; i++) {
        pos = align_up(pos, CN_FILE_SECTION_ALIGN);
        sec[i].offset = pos;
        pos += sec[i].length;
    }
    const uint64_t meta_len = pos;
    for (int i = 0; i < n_td; i++) {
        pos = align_up(pos, CN_FILE_TENSOR_ALIGN);
        td[i].offset = pos;
        pos += td[i].nbytes;
    }
    const uint64_t total = pos;
    if (total > SIZE_MAX) {
        free(td);
        cn_free(zeros);
        return cn_fail(CONURE_E_NOMEM, "model_save: file size %llu does not fit in memory",
                       (unsigned long long)total);
    }
    *size_out = (size_t)total;
    if (!sink) {
        free(td);
        cn_free(zeros);
        return CONURE_OK;
    }

    /* --- encode metadata into one zeroed block (gaps stay zero) --- */
    uint8_t *meta = calloc(1, (size_t)meta_len);
    if (!meta) {
        free(td);
        cn_free(zeros);
        return cn_fail(CONURE_E_NOMEM, "model_save: out of memory (%llu bytes of metadata)",
                       (unsigned long long)meta_len);
    }
    for (int i = 0; i < n_td; i++)
        td[i].crc = payload_crc(&td[i]);

    for (int i = 0; i < n_known; i++) {
        uint8_t *p = meta + sec[i].offset;
        if (sec[i].tag == CN_SEC_MODL) {
            encode_modl(m, p);
        } else if (sec[i].tag == CN_SEC_TASK) {
            le_put_u32(p, (uint32_t)m->n_tasks);
            le_put_u32(p + 4, CN_FILE_TASK_ENTRY);
            for (int32_t k = 0; k < m->n_tasks; k++)
                encode_task(&m->tasks[k], p + 8 + CN_FILE_TASK_ENTRY * (size_t)k);
        } else if (sec[i].tag == CN_SEC_OPTM) {
            le_put_u64(p + 0, (uint64_t)m->phase_step);
            le_put_u64(p + 8, m->rng.state);
            le_put_u64(p + 16, m->rng.inc);
            le_put_u32(p + 24, (uint32_t)opt_task);
            le_put_u32(p + 28, 0);
        } else if (sec[i].tag == CN_SEC_TDIR) {
            le_put_u32(p, (uint32_t)n_td);
            le_put_u32(p + 4, CN_FILE_TDIR_ENTRY);
            for (int k = 0; k < n_td; k++) {
                uint8_t *e = p + 8 + CN_FILE_TDIR_ENTRY * (size_t)k;
                memcpy(e, td[k].name, CN_FILE_NAME_LEN);  /* NUL-padded by snprintf+memset */
                le_put_u32(e + 48, td[k].dtype);
                le_put_u32(e + 52, td[k].ndim);
                for (int d = 0; d < 4; d++)
                    le_put_u64(e + 56 + 8 * d, td[k].shape[d]);
                le_put_u64(e + 88, td[k].offset);
                le_put_u64(e + 96, td[k].nbytes);
                le_put_u32(e + 104, td[k].crc);
                le_put_u32(e + 108, 0);
            }
        }
        sec[i].data = p;
    }
    for (int i = n_known; i < n_sec; i++)
        if (sec[i].length)
            memcpy(meta + sec[i].offset, sec[i].data, (size_t)sec[i].length);

    uint8_t *tab = meta + CN_FILE_HEADER_SIZE;
    for (int i = 0; i < n_sec; i++) {
        uint8_t *e = tab + CN_FILE_SECTION_ENTRY * (size_t)i;
        le_put_u32(e + 0, sec[i].tag);
        le_put_u32(e + 4, sec[i].flags);
        le_put_u64(e + 8, sec[i].offset);
        le_put_u64(e + 16, sec[i].length);
        le_put_u32(e + 24, crc_of(meta + sec[i].offset, sec[i].length));
        le_put_u32(e + 28, 0);
    }

    int major = opts && opts->major >= 0 ? opts->major : CN_FILE_MAJOR;
    int minor = opts && opts->minor >= 0 ? opts->minor : CN_FILE_MINOR;
    memcpy(meta, CN_FILE_MAGIC, CN_FILE_MAGIC_LEN);
    le_put_u16(meta + 8, (uint16_t)major);
    le_put_u16(meta + 10, (uint16_t)minor);
    le_put_u32(meta + 12, CN_FILE_HEADER_SIZE);
    le_put_u64(meta + 16, total);
    le_put_u64(meta + 24, CN_FILE_HEADER_SIZE);
    le_put_u32(meta + 32, (uint32_t)n_sec);
    le_put_u32(meta + 36, crc_of(tab, CN_FILE_SECTION_ENTRY * (uint64_t)n_sec));
    le_put_u32(meta + 40, with_opt ? CN_HDR_F_OPTIMIZER : 0);
    le_put_u32(meta + 60, crc_of(meta, 60));

    /* --- stream --- */
    st = sink->write(sink->ctx, meta, (size_t)meta_len);
    uint64_t at = meta_len;
    for (int i = 0; i < n_td && st == CONURE_OK; i++) {
        if (td[i].offset > at)
            st = sink->write(sink->ctx, zero_pad, (size_t)(td[i].offset - at));
        if (st == CONURE_OK)
            st = payload_emit(sink, &td[i]);
        at = td[i].offset + td[i].nbytes;
    }
    free(meta);
    free(td);
    cn_free(zeros);
    return st;
}

typedef struct mem_sink {
    uint8_t *buf;
    size_t cap, pos;
} mem_sink;

static conure_status mem_write(void *ctx, const void *data, size_t len)
{
    mem_sink *s = ctx;
    if (len > s->cap - s->pos)
        return cn_fail(CONURE_E_INTERNAL, "model_save: writer overran its buffer");
    memcpy(s->buf + s->pos, data, len);
    s->pos += len;
    return CONURE_OK;
}

conure_status cn_model_serialize(const conure_model *m, uint32_t flags, void *buf, size_t cap,
                                 size_t *size_out)
{
    size_t need = 0;
    conure_status st = cn_model_serialize_ex(m, flags, NULL, NULL, &need);
    if (st != CONURE_OK)
        return st;
    *size_out = need;
    if (!buf)
        return CONURE_OK;
    if (cap < need)
        return cn_fail(CONURE_E_BUFFER_TOO_SMALL,
                       "model_save_buffer: cap = %zu bytes is too small: the model needs %zu",
                       cap, need);
    mem_sink ms = {buf, cap, 0};
    cn_io_sink sink = {mem_write, &ms};
    size_t again = 0;
    st = cn_model_serialize_ex(m, flags, NULL, &sink, &again);
    if (st == CONURE_OK && (again != need || ms.pos != need))
        st = cn_fail(CONURE_E_INTERNAL, "model_save_buffer: wrote %zu bytes, planned %zu",
                     ms.pos, need);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Reader.                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct reader {
    const uint8_t *p;
    uint64_t size;
    const char *where;
    unsigned minor;  /* file's minor version */
} reader;

/* Fits [off, off+len) inside the buffer, without overflow. */
static int in_bounds(const reader *r, uint64_t off, uint64_t len)
{
    return off <= r->size && len <= r->size - off;
}

/* A section the reader found in the table. */
typedef struct sec_in {
    uint32_t tag, flags;
    uint64_t offset, length;
    int entry;  /* index in the table */
} sec_in;

/* For the coverage check: every byte is in exactly one region or is zero. */
typedef struct region {
    uint64_t off, len;
    int kind;   /* 0 header, 1 table, 2 section, 3 tensor */
    int index;  /* section entry / tensor index */
} region;

static int region_cmp(const void *a, const void *b)
{
    const region *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return 0;
}

static void region_text(const region *g, const sec_in *secs, const tdesc *td, char *out,
                        size_t cap)
{
    char tag[5];
    switch (g->kind) {
    case 0: snprintf(out, cap, "the header"); break;
    case 1: snprintf(out, cap, "the section table"); break;
    case 2:
        tag_text(secs[g->index].tag, tag);
        snprintf(out, cap, "section '%s'", tag);
        break;
    default: snprintf(out, cap, "tensor '%s'", td[g->index].name); break;
    }
}

static int finite_f(float x)
{
    return isfinite(x) != 0;
}

static int lt_valid(int32_t kind, int32_t loss)
{
    switch (kind) {
    case CONURE_TASK_NEXT_ITEM: return loss == CN_LOSS_SAMPLED_SOFTMAX || loss == CN_LOSS_SOFTMAX;
    case CONURE_TASK_ITEM_REC: return loss == CN_LOSS_BPR;
    case CONURE_TASK_CLASSIFICATION: return loss == CN_LOSS_BCE || loss == CN_LOSS_SOFTMAX;
    default: return 0;
    }
}

/* Checks one task record; msg gets the reason on failure. */
static int task_fields_ok(const cn_config *cfg, const cn_task *t, int32_t k, int32_t n_tasks,
                          char *msg, size_t cap)
{
    const int64_t C = cfg->channels;
    if (t->kind < CONURE_TASK_NEXT_ITEM || t->kind > CONURE_TASK_CLASSIFICATION) {
        snprintf(msg, cap, "kind = %d is not a task kind (1..3)", (int)t->kind);
        return 0;
    }
    if (t->kind == CONURE_TASK_NEXT_ITEM && t->n_targets != cfg->vocab_size) {
        snprintf(msg, cap, "n_targets = %d of a next-item task differs from vocab_size %d",
                 (int)t->n_targets, (int)cfg->vocab_size);
        return 0;
    }
    if (t->n_targets < 2) {
        snprintf(msg, cap, "n_targets = %d is below 2", (int)t->n_targets);
        return 0;
    }
    if (t->phase < CONURE_PHASE_DENSE || t->phase > CONURE_PHASE_DONE) {
        snprintf(msg, cap, "phase = %d is not a phase (1..3)", (int)t->phase);
        return 0;
    }
    if (k < n_tasks && t->phase != CONURE_PHASE_DONE) {
        snprintf(msg, cap, "phase = %d but only the last task may be unfinished", (int)t->phase);
        return 0;
    }
    if (cfg->training_mode == CN_MODE_FINETUNE && t->phase == CONURE_PHASE_RETRAIN) {
        snprintf(msg, cap, "phase RETRAIN is impossible in training_mode finetune");
        return 0;
    }
    if (!lt_valid(t->kind, t->loss)) {
        snprintf(msg, cap, "loss = %d is not valid for task kind %d", (int)t->loss, (int)t->kind);
        return 0;
    }
    if (t->loss == CN_LOSS_SAMPLED_SOFTMAX
            ? (t->negatives < 1 || (int64_t)t->negatives > (int64_t)cfg->vocab_size - 2)
            : t->negatives != 0) {
        snprintf(msg, cap, "negatives = %d is invalid (sampled softmax: 1 .. vocab_size-2 = %d; "
                 "other losses: 0)", (int)t->negatives, (int)cfg->vocab_size - 2);
        return 0;
    }
    if ((uint64_t)t->n_targets * (uint64_t)C > ((uint64_t)1 << 34)) {
        snprintf(msg, cap, "n_targets = %d times channels exceeds 2^34 floats", (int)t->n_targets);
        return 0;
    }
    struct { const char *name; float v; float lo, hi; int lo_open, hi_open; } r[] = {
        {"lr", t->lr, 0, 1, 1, 0},
        {"l2", t->l2, 0, 10, 0, 0},
        {"rho", t->rho, 0, 10, 1, 0},
        {"release_ratio", t->release_ratio, 0, 1, 0, 1},
        {"adam_beta1", t->beta1, 0, 1, 0, 1},
        {"adam_beta2", t->beta2, 0, 1, 0, 1},
        {"adam_eps", t->eps, 0, 1, 1, 0},
        {"dropout", t->dropout, 0, 0.9f, 0, 0},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        float v = r[i].v;
        if (!finite_f(v) || v < r[i].lo || v > r[i].hi || (r[i].lo_open && v <= r[i].lo) ||
            (r[i].hi_open && v >= r[i].hi)) {
            snprintf(msg, cap, "%s = %g is outside %s%g, %g%s", r[i].name, (double)v,
                     r[i].lo_open ? "(" : "[", (double)r[i].lo, (double)r[i].hi,
                     r[i].hi_open ? ")" : "]");
            return 0;
        }
    }
    uint64_t want = (uint64_t)t->n_targets * (uint64_t)(C + (t->kind == CONURE_TASK_NEXT_ITEM));
    if ((uint64_t)t->head_numel != want) {
        snprintf(msg, cap, "head_numel = %llu, expected %llu for kind %d with %d targets",
                 (unsigned long long)t->head_numel, (unsigned long long)want, (int)t->kind,
                 (int)t->n_targets);
        return 0;
    }
    return 1;
}

/* The file-level checks up to (not including) the model allocation. */
typedef struct parsed {
    cn_config cfg;
    int32_t backbone_frozen;
    int32_t n_tasks;
    cn_task tasks[CN_MAX_TASKS];  /* scalar fields only */
    int with_opt;
    int64_t phase_step;
    uint64_t rng_state, rng_inc;
    int32_t opt_task;
    int n_sec;
    sec_in secs[CN_FILE_MAX_SECTIONS];
    int i_modl, i_task, i_optm, i_tdir;
    uint32_t n_td;
} parsed;

#define FAIL(...) cn_fail(CONURE_E_FORMAT, __VA_ARGS__)

static conure_status parse_header(reader *r, parsed *ps)
{
    const uint8_t *p = r->p;
    const char *w = r->where;
    static const uint8_t magic[CN_FILE_MAGIC_LEN + 1] = CN_FILE_MAGIC;
    size_t mlen = r->size < CN_FILE_MAGIC_LEN ? (size_t)r->size : CN_FILE_MAGIC_LEN;
    if (r->size == 0)
        return FAIL("%s: empty input (0 bytes): not a model file", w);
    if (memcmp(p, magic, mlen) != 0) {
        char hex[3 * CN_FILE_MAGIC_LEN + 1] = "";
        for (size_t i = 0; i < mlen; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, "%02x ", p[i]);
        if (mlen)
            hex[3 * mlen - 1] = '\0';
        return FAIL("%s: not a libconure model file (magic at offset 0 is [%s], expected "
                    "[89 43 4e 52 0d 0a 1a 0a])", w, hex);
    }
    if (r->size < 12)
        return FAIL("%s: truncated: %llu bytes, the header alone has %d", w,
                    (unsigned long long)r->size, CN_FILE_HEADER_SIZE);
    unsigned major = le_u16(p + 8), minor = le_u16(p + 10);
    if (major != CN_FILE_MAJOR)
        return cn_fail(CONURE_E_VERSION,
                       "%s: model file format version %u.%u is %s; this libconure reads "
                       "version %d.x only%s", w, major, minor,
                       major > CN_FILE_MAJOR ? "newer than this library" : "not supported",
                       CN_FILE_MAJOR,
                       major > CN_FILE_MAJOR ? " (upgrade libconure to load it)" : "");
    r->minor = minor;
    if (r->size < CN_FILE_HEADER_SIZE)
        return FAIL("%s: truncated: %llu bytes, the header alone has %d", w,
                    (unsigned long long)r->size, CN_FILE_HEADER_SIZE);
    uint32_t hcrc = le_u32(p + 60), hcalc = crc_of(p, 60);
    if (hcrc != hcalc)
        return FAIL("%s: header checksum mismatch (field header_crc at offset 60 is 0x%08x, the "
                    "header hashes to 0x%08x): corrupted file", w, hcrc, hcalc);
    uint32_t hsize = le_u32(p + 12);
    if (hsize != CN_FILE_HEADER_SIZE)
        return FAIL("%s: header field header_size (offset 12) = %u, expected %d", w, hsize,
                    CN_FILE_HEADER_SIZE);
    uint64_t fsize = le_u64(p + 16);
    if (fsize > r->size)
        return FAIL("%s: truncated: the header (field file_size, offset 16) says %llu bytes, "
                    "only %llu are present", w, (unsigned long long)fsize,
                    (unsigned long long)r->size);
    if (fsize < r->size)
        return FAIL("%s: %llu unexpected bytes after the end of the model (file_size %llu)", w,
                    (unsigned long long)(r->size - fsize), (unsigned long long)fsize);
    uint32_t flags = le_u32(p + 40);
    if (flags & ~(uint32_t)CN_HDR_F_OPTIMIZER)
        return FAIL("%s: header field flags (offset 40) = 0x%x has unknown bits", w, flags);
    if (le_u32(p + 44) != 0 || le_u64(p + 48) != 0 || le_u32(p + 56) != 0)
        return FAIL("%s: header reserved bytes 44..59 are not zero", w);
    ps->with_opt = (flags & CN_HDR_F_OPTIMIZER) != 0;

    uint64_t toff = le_u64(p + 24);
    uint32_t nsec = le_u32(p + 32);
    if (nsec < 1 || nsec > CN_FILE_MAX_SECTIONS)
        return FAIL("%s: header field n_sections (offset 32) = %u is outside 1..%d", w, nsec,
                    CN_FILE_MAX_SECTIONS);
    if (toff < CN_FILE_HEADER_SIZE || toff % CN_FILE_SECTION_ALIGN != 0 ||
        !in_bounds(r, toff, (uint64_t)nsec * CN_FILE_SECTION_ENTRY))
        return FAIL("%s: section table (offset %llu, %u entries) lies outside the file (%llu "
                    "bytes) or is misaligned", w, (unsigned long long)toff, nsec,
                    (unsigned long long)r->size);
    uint32_t tcrc = le_u32(p + 36), tcalc = crc_of(p + toff, (uint64_t)nsec * 32);
    if (tcrc != tcalc)
        return FAIL("%s: section table checksum mismatch (offset %llu: stored 0x%08x, computed "
                    "0x%08x): corrupted file", w, (unsigned long long)toff, tcrc, tcalc);

    ps->n_sec = (int)nsec;
    ps->i_modl = ps->i_task = ps->i_optm = ps->i_tdir = -1;
    for (uint32_t i = 0; i < nsec; i++) {
        const uint8_t *e = p + toff + (uint64_t)i * CN_FILE_SECTION_ENTRY;
        uint64_t eoff = toff + (uint64_t)i * CN_FILE_SECTION_ENTRY;
        sec_in *s = &ps->secs[i];
        s->tag = le_u32(e);
        s->flags = le_u32(e + 4);
        s->offset = le_u64(e + 8);
        s->length = le_u64(e + 16);
        s->entry = (int)i;
        char tag[5];
        tag_text(s->tag, tag);
        for (int c = 0; c < 4; c++) {
            unsigned char ch = (unsigned char)(s->tag >> (8 * c));
            if (ch < 0x20 || ch >= 0x7f)
                return FAIL("%s: section entry %u (offset %llu) has a non-ASCII tag", w, i,
                            (unsigned long long)eoff);
        }
        if (s->flags & ~(uint32_t)CN_SEC_F_REQUIRED)
            return FAIL("%s: section '%s' (entry %u) has unknown flags 0x%x", w, tag, i, s->flags);
        if (le_u32(e + 28) != 0)
            return FAIL("%s: section '%s' (entry %u) reserved field is not zero", w, tag, i);
        if (s->offset % CN_FILE_SECTION_ALIGN != 0 || !in_bounds(r, s->offset, s->length))
            return FAIL("%s: section '%s' (offset %llu, length %llu) lies outside the file "
                        "(%llu bytes) or is misaligned", w, tag, (unsigned long long)s->offset,
                        (unsigned long long)s->length, (unsigned long long)r->size);
        for (uint32_t j = 0; j < i; j++)
            if (ps->secs[j].tag == s->tag)
                return FAIL("%s: section '%s' appears twice (entries %u and %u)", w, tag, j, i);
        uint32_t scrc = le_u32(e + 24), scalc = crc_of(p + s->offset, s->length);
        if (scrc != scalc)
            return FAIL("%s: section '%s' checksum mismatch (offset %llu, %llu bytes: stored "
                        "0x%08x, computed 0x%08x): corrupted file", w, tag,
                        (unsigned long long)s->offset, (unsigned long long)s->length, scrc,
                        scalc);
        if (s->tag == CN_SEC_MODL)
            ps->i_modl = (int)i;
        else if (s->tag == CN_SEC_TASK)
            ps->i_task = (int)i;
        else if (s->tag == CN_SEC_OPTM)
            ps->i_optm = (int)i;
        else if (s->tag == CN_SEC_TDIR)
            ps->i_tdir = (int)i;
        else if (s->flags & CN_SEC_F_REQUIRED)
            return cn_fail(CONURE_E_VERSION,
                           "%s: the file (format %d.%u) requires section '%s', which this "
                           "libconure (format %d.%d) does not know; upgrade libconure", w,
                           CN_FILE_MAJOR, r->minor, tag, CN_FILE_MAJOR, CN_FILE_MINOR);
        /* else: an optional section of a later minor version: skipped */
    }
    if (ps->i_modl < 0 || ps->i_task < 0 || ps->i_tdir < 0)
        return FAIL("%s: a required section (%s) is missing", w,
                    ps->i_modl < 0 ? "MODL" : ps->i_task < 0 ? "TASK" : "TDIR");
    if ((ps->i_optm >= 0) != ps->with_opt)
        return FAIL("%s: header flag 'optimizer' (offset 40) is %d but section OPTM is %s", w,
                    ps->with_opt, ps->i_optm >= 0 ? "present" : "absent");
    return CONURE_OK;
}

/* Length rule for the fixed-layout sections: exactly `want` for files of
 * this reader's minor version or older; a newer minor may append fields. */
static int length_ok(const reader *r, uint64_t have, uint64_t want)
{
    return r->minor > CN_FILE_MINOR ? have >= want : have == want;
}

static conure_status parse_modl(reader *r, parsed *ps)
{
    const sec_in *s = &ps->secs[ps->i_modl];
    const uint8_t *p = r->p + s->offset;
    const char *w = r->where;
    if (s->length < MODL_FIXED)
        return FAIL("%s: section MODL (offset %llu) has %llu bytes, needs at least %d", w,
                    (unsigned long long)s->offset, (unsigned long long)s->length, MODL_FIXED);
    cn_config *c = &ps->cfg;
    memset(c, 0, sizeof *c);
    c->vocab_size = le_i32(p + 0);
    c->channels = le_i32(p + 4);
    c->kernel_width = le_i32(p + 8);
    c->max_len = le_i32(p + 12);
    c->n_blocks = le_i32(p + 16);
    c->block_order = le_i32(p + 20);
    c->training_mode = le_i32(p + 24);
    ps->backbone_frozen = le_i32(p + 28);
    c->seed = le_u64(p + 32);
    c->init_std = le_f32(p + 40);
    /* the ranges the size arithmetic below relies on, checked here too so
     * that it never depends on cn_config_validate's strictness */
    if (c->vocab_size < 2 || c->channels < 1 || c->channels > 4096 || c->kernel_width < 1 ||
        c->kernel_width > 16)
        return FAIL("%s: section MODL (offset %llu): vocab_size %d / channels %d / kernel_width "
                    "%d out of range", w, (unsigned long long)s->offset, (int)c->vocab_size,
                    (int)c->channels, (int)c->kernel_width);
    if (c->n_blocks < 1 || c->n_blocks > CN_MAX_BLOCKS)
        return FAIL("%s: section MODL field n_blocks (file offset %llu) = %d is outside 1..%d", w,
                    (unsigned long long)(s->offset + 16), (int)c->n_blocks, CN_MAX_BLOCKS);
    if (!length_ok(r, s->length, MODL_FIXED + 4 * (uint64_t)c->n_blocks))
        return FAIL("%s: section MODL has %llu bytes, expected %llu for %d blocks", w,
                    (unsigned long long)s->length,
                    (unsigned long long)(MODL_FIXED + 4 * (uint64_t)c->n_blocks),
                    (int)c->n_blocks);
    if (le_u32(p + 44) != 0)
        return FAIL("%s: section MODL reserved field (file offset %llu) is not zero", w,
                    (unsigned long long)(s->offset + 44));
    for (int32_t b = 0; b < c->n_blocks; b++)
        c->dilations[b] = le_i32(p + MODL_FIXED + 4 * b);
    if (ps->backbone_frozen != 0 && ps->backbone_frozen != 1)
        return FAIL("%s: section MODL field backbone_frozen (file offset %llu) = %d is not 0 or "
                    "1", w, (unsigned long long)(s->offset + 28), (int)ps->backbone_frozen);
    if (!finite_f(c->init_std))
        return FAIL("%s: section MODL field init_std is not finite", w);
    conure_status st = cn_config_validate(c, w);
    if (st != CONURE_OK) {
        char why[CN_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", cn_error_text());
        return FAIL("%s: section MODL (offset %llu) holds an invalid configuration: %s", w,
                    (unsigned long long)s->offset, why);
    }
    return CONURE_OK;
}

static conure_status parse_task(reader *r, parsed *ps)
{
    const sec_in *s = &ps->secs[ps->i_task];
    const uint8_t *p = r->p + s->offset;
    const char *w = r->where;
    if (s->length < 8)
        return FAIL("%s: section TASK (offset %llu) has %llu bytes, needs at least 8", w,
                    (unsigned long long)s->offset, (unsigned long long)s->length);
    uint32_t n = le_u32(p), esz = le_u32(p + 4);
    if (n > CN_MAX_TASKS)
        return FAIL("%s: section TASK field n_tasks (file offset %llu) = %u exceeds %d", w,
                    (unsigned long long)s->offset, n, CN_MAX_TASKS);
    if (!(r->minor > CN_FILE_MINOR ? (esz >= CN_FILE_TASK_ENTRY && esz <= 4096)
                                   : esz == CN_FILE_TASK_ENTRY))
        return FAIL("%s: section TASK field entry_size (file offset %llu) = %u, expected %d", w,
                    (unsigned long long)(s->offset + 4), esz, CN_FILE_TASK_ENTRY);
    if (s->length != 8 + (uint64_t)n * esz)
        return FAIL("%s: section TASK has %llu bytes, expected %llu for %u tasks", w,
                    (unsigned long long)s->length, (unsigned long long)(8 + (uint64_t)n * esz),
                    n);
    ps->n_tasks = (int32_t)n;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = p + 8 + (uint64_t)i * esz;
        cn_task *t = &ps->tasks[i];
        memset(t, 0, sizeof *t);
        t->kind = le_i32(e + 0);
        t->n_targets = le_i32(e + 4);
        t->phase = le_i32(e + 8);
        t->loss = le_i32(e + 12);
        t->negatives = le_i32(e + 16);
        t->lr = le_f32(e + 20);
        t->l2 = le_f32(e + 24);
        t->rho = le_f32(e + 28);
        t->release_ratio = le_f32(e + 32);
        t->beta1 = le_f32(e + 36);
        t->beta2 = le_f32(e + 40);
        t->eps = le_f32(e + 44);
        uint64_t hn = le_u64(e + 48);
        t->dropout = le_f32(e + 56);
        uint32_t flags = le_u32(e + 60);
        t->tied = (flags & CN_TASK_FLAG_TIED) ? 1 : 0;
        char why[256];
        if (flags & ~(uint32_t)CN_TASK_FLAG_TIED) {
            snprintf(why, sizeof why, "flags = 0x%x has unknown bits", (unsigned)flags);
        } else if (t->tied && t->kind != CONURE_TASK_NEXT_ITEM) {
            snprintf(why, sizeof why, "flag tie_embedding is set on a task that is not next-item");
        } else if (hn > SIZE_MAX) {
            snprintf(why, sizeof why, "head_numel = %llu is too large",
                     (unsigned long long)hn);
        } else {
            t->head_numel = (size_t)hn;
            if (task_fields_ok(&ps->cfg, t, (int32_t)i + 1, (int32_t)n, why, sizeof why))
                continue;
        }
        return FAIL("%s: section TASK, task %u (file offset %llu): %s", w, i + 1,
                    (unsigned long long)(s->offset + 8 + (uint64_t)i * esz), why);
    }
    /* the embedding and layer norms freeze when task 1 is pruned (conure
     * mode) and thaw only when every task is discarded */
    int frozen = ps->cfg.training_mode == CN_MODE_CONURE && n > 0 &&
                 ps->tasks[0].phase != CONURE_PHASE_DENSE;
    if (ps->backbone_frozen != frozen)
        return FAIL("%s: section MODL field backbone_frozen = %d contradicts the tasks (training "
                    "mode %d, %u tasks, task 1 phase %d)", w, (int)ps->backbone_frozen,
                    (int)ps->cfg.training_mode, n, n > 0 ? (int)ps->tasks[0].phase : 0);
    return CONURE_OK;
}

static conure_status parse_optm(reader *r, parsed *ps)
{
    ps->opt_task = 0;
    if (ps->i_optm < 0)
        return CONURE_OK;
    const sec_in *s = &ps->secs[ps->i_optm];
    const uint8_t *p = r->p + s->offset;
    const char *w = r->where;
    if (!length_ok(r, s->length, OPTM_SIZE))
        return FAIL("%s: section OPTM (offset %llu) has %llu bytes, expected %d", w,
                    (unsigned long long)s->offset, (unsigned long long)s->length, OPTM_SIZE);
    ps->phase_step = le_i64(p);
    ps->rng_state = le_u64(p + 8);
    ps->rng_inc = le_u64(p + 16);
    uint32_t ot = le_u32(p + 24);
    int32_t want = 0;
    if (ps->n_tasks > 0) {
        int32_t ph = ps->tasks[ps->n_tasks - 1].phase;
        if (ph == CONURE_PHASE_DENSE || ph == CONURE_PHASE_RETRAIN)
            want = ps->n_tasks;
    }
    if (ps->phase_step < 0)
        return FAIL("%s: section OPTM field phase_step (file offset %llu) = %lld is negative", w,
                    (unsigned long long)s->offset, (long long)ps->phase_step);
    if ((ps->rng_inc & 1u) == 0)
        return FAIL("%s: section OPTM field rng_inc (file offset %llu) is even (must be odd)", w,
                    (unsigned long long)(s->offset + 16));
    if (ot != (uint32_t)want)
        return FAIL("%s: section OPTM field task (file offset %llu) = %u, expected %d (the "
                    "task in training, or 0)", w, (unsigned long long)(s->offset + 24), ot,
                    (int)want);
    if (le_u32(p + 28) != 0)
        return FAIL("%s: section OPTM reserved field is not zero", w);
    ps->opt_task = want;
    return CONURE_OK;
}

/* Upper bound on what the file's tensors must occupy, from config and
 * tasks alone: shown to fit in the file before anything is allocated. */
static conure_status check_sizes_fit(reader *r, const parsed *ps)
{
    const cn_config *c = &ps->cfg;
    uint64_t C = (uint64_t)c->channels, K = (uint64_t)c->kernel_width;
    uint64_t nb = (uint64_t)c->n_blocks;
    /* all factors are bounded by cn_config_validate: no overflow in 64 bits */
    uint64_t backbone = (uint64_t)c->vocab_size * C + nb * (4 * C + 2 * K * C * C);
    uint64_t bytes = 4 * backbone + 2 * nb * K * C * C;  /* floats + owner bytes */
    if (ps->with_opt)
        bytes += 8 * backbone;
    for (int32_t i = 0; i < ps->n_tasks; i++) {
        uint64_t h = 4 * (uint64_t)ps->tasks[i].head_numel;  /* < 2^31 * 4097 * 4 */
        bytes += h;
        if (ps->with_opt && i + 1 == ps->opt_task)
            bytes += 2 * h;
        if (bytes > r->size)
            break;
    }
    if (bytes > r->size)
        return FAIL("%s: the configuration and tasks need at least %llu bytes of tensors but "
                    "the file has %llu bytes in all (truncated or corrupted)", r->where,
                    (unsigned long long)bytes, (unsigned long long)r->size);
    return CONURE_OK;
}

/* Compares the directory with the layout of model m and fills the offsets
 * and checksums of `td` from the file. */
static conure_status check_directory(reader *r, const parsed *ps, tdesc *td, int n_td)
{
    const sec_in *s = &ps->secs[ps->i_tdir];
    const uint8_t *p = r->p + s->offset;
    const char *w = r->where;
    if (s->length < 8)
        return FAIL("%s: section TDIR (offset %llu) has %llu bytes, needs at least 8", w,
                    (unsigned long long)s->offset, (unsigned long long)s->length);
    uint32_t n = le_u32(p), esz = le_u32(p + 4);
    if (!(r->minor > CN_FILE_MINOR ? (esz >= CN_FILE_TDIR_ENTRY && esz <= 4096)
                                   : esz == CN_FILE_TDIR_ENTRY))
        return FAIL("%s: section TDIR field entry_size (file offset %llu) = %u, expected %d", w,
                    (unsigned long long)(s->offset + 4), esz, CN_FILE_TDIR_ENTRY);
    if (n != (uint32_t)n_td)
        return FAIL("%s: section TDIR lists %u tensors; this configuration, its %d tasks and "
                    "the optimizer flag need exactly %d", w, n, (int)ps->n_tasks, n_td);
    if (s->length != 8 + (uint64_t)n * esz)
        return FAIL("%s: section TDIR has %llu bytes, expected %llu for %u entries", w,
                    (unsigned long long)s->length, (unsigned long long)(8 + (uint64_t)n * esz),
                    n);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = p + 8 + (uint64_t)i * esz;
        unsigned long long eoff = (unsigned long long)(s->offset + 8 + (uint64_t)i * esz);
        tdesc *d = &td[i];
        /* name: NUL-terminated inside its 48 bytes, NUL-padded */
        const uint8_t *nul = memchr(e, 0, CN_FILE_NAME_LEN);
        int name_ok = nul != NULL;
        for (const uint8_t *q = nul; name_ok && q < e + CN_FILE_NAME_LEN; q++)
            name_ok = *q == 0;
        if (!name_ok || memcmp(e, d->name, CN_FILE_NAME_LEN) != 0) {
            char got[CN_FILE_NAME_LEN + 1];
            for (int c = 0; c < CN_FILE_NAME_LEN; c++)
                got[c] = (e[c] >= 0x20 && e[c] < 0x7f) ? (char)e[c] : (e[c] ? '?' : '\0');
            got[CN_FILE_NAME_LEN] = '\0';
            return FAIL("%s: section TDIR entry %u (file offset %llu): name \"%s\" does not "
                        "match the layout of this configuration (expected \"%s\")", w, i, eoff,
                        got, d->name);
        }
        uint32_t dtype = le_u32(e + 48), ndim = le_u32(e + 52);
        if (dtype != d->dtype || ndim != d->ndim)
            return FAIL("%s: tensor '%s' (TDIR entry %u, file offset %llu): dtype %u / ndim %u, "
                        "expected %u / %u", w, d->name, i, eoff, dtype, ndim, d->dtype, d->ndim);
        for (int k = 0; k < 4; k++) {
            uint64_t got = le_u64(e + 56 + 8 * k);
            if (got != d->shape[k])
                return FAIL("%s: tensor '%s' (TDIR entry %u, file offset %llu): shape[%d] = "
                            "%llu, expected %llu", w, d->name, i, eoff, k,
                            (unsigned long long)got, (unsigned long long)d->shape[k]);
        }
        uint64_t off = le_u64(e + 88), nbytes = le_u64(e + 96);
        if (nbytes != d->nbytes)
            return FAIL("%s: tensor '%s' (TDIR entry %u): nbytes = %llu, expected %llu", w,
                        d->name, i, (unsigned long long)nbytes, (unsigned long long)d->nbytes);
        if (off % CN_FILE_TENSOR_ALIGN != 0 || !in_bounds(r, off, nbytes))
            return FAIL("%s: tensor '%s' (TDIR entry %u): payload at offset %llu, %llu bytes, "
                        "lies outside the file (%llu bytes) or is not %d-byte aligned", w,
                        d->name, i, (unsigned long long)off, (unsigned long long)nbytes,
                        (unsigned long long)r->size, CN_FILE_TENSOR_ALIGN);
        if (le_u32(e + 108) != 0)
            return FAIL("%s: tensor '%s' (TDIR entry %u): reserved field is not zero", w,
                        d->name, i);
        d->offset = off;
        d->crc = le_u32(e + 104);
    }
    return CONURE_OK;
}

/* Every byte of the file belongs to exactly one region or is zero padding. */
static conure_status check_coverage(reader *r, const parsed *ps, const tdesc *td, int n_td)
{
    size_t n = 2 + (size_t)ps->n_sec + (size_t)n_td;
    region *g = malloc(n * sizeof *g);
    if (!g)
        return cn_fail(CONURE_E_NOMEM, "%s: out of memory", r->where);
    size_t k = 0;
    g[k++] = (region){0, CN_FILE_HEADER_SIZE, 0, 0};
    g[k++] = (region){le_u64(r->p + 24), (uint64_t)ps->n_sec * CN_FILE_SECTION_ENTRY, 1, 0};
    for (int i = 0; i < ps->n_sec; i++)
        g[k++] = (region){ps->secs[i].offset, ps->secs[i].length, 2, i};
    for (int i = 0; i < n_td; i++)
        g[k++] = (region){td[i].offset, td[i].nbytes, 3, i};
    qsort(g, k, sizeof *g, region_cmp);
    conure_status st = CONURE_OK;
    uint64_t at = 0;
    for (size_t i = 0; i < k && st == CONURE_OK; i++) {
        if (g[i].off < at) {
            char a[96], b[96];
            region_text(&g[i - 1], ps->secs, td, a, sizeof a);
            region_text(&g[i], ps->secs, td, b, sizeof b);
            st = FAIL("%s: %s (offset %llu) overlaps %s (offset %llu, %llu bytes)", r->where, b,
                      (unsigned long long)g[i].off, a, (unsigned long long)g[i - 1].off,
                      (unsigned long long)g[i - 1].len);
            break;
        }
        for (uint64_t q = at; q < g[i].off; q++)
            if (r->p[q] != 0) {
                st = FAIL("%s: padding byte at offset %llu is 0x%02x, not zero (corrupted file)",
                          r->where, (unsigned long long)q, r->p[q]);
                break;
            }
        at = g[i].off + g[i].len;
    }
    if (st == CONURE_OK && at != r->size)
        st = FAIL("%s: %llu bytes after offset %llu belong to no section or tensor", r->where,
                  (unsigned long long)(r->size - at), (unsigned long long)at);
    free(g);
    return st;
}

/* Values the checksums cannot vouch for: finite floats, owners. */
static conure_status check_values(reader *r, const parsed *ps, const conure_model *m,
                                  const tdesc *td, int n_td)
{
    for (int i = 0; i < n_td; i++) {
        const tdesc *d = &td[i];
        if (d->dtype != CN_DTYPE_F32)
            continue;
        const float *x = d->data;
        uint64_t n = d->nbytes / 4;
        int is_v = strstr(d->name, "adam_v") != NULL;
        for (uint64_t j = 0; j < n; j++)
            if (!finite_f(x[j]) || (is_v && x[j] < 0))
                return FAIL("%s: tensor '%s' element %llu (file offset %llu) = %g is not %s", 
                            r->where, d->name, (unsigned long long)j,
                            (unsigned long long)(d->offset + 4 * j), (double)x[j],
                            is_v ? "a finite non-negative number" : "finite");
    }
    const uint64_t total = (uint64_t)m->n_conv * m->conv_numel;
    uint64_t owner_off = 0;
    for (int i = 0; i < n_td; i++)
        if (td[i].data == m->owner)
            owner_off = td[i].offset;
    for (uint64_t j = 0; j < total; j++) {
        unsigned o = m->owner[j];
        if (o == 0)
            continue;
        const char *why = NULL;
        if (ps->cfg.training_mode == CN_MODE_FINETUNE)
            why = "training_mode finetune has no owners";
        else if (o > (unsigned)ps->n_tasks)
            why = "no such task";
        else if (ps->tasks[o - 1].phase == CONURE_PHASE_DENSE)
            why = "that task is still in its dense phase and owns nothing yet";
        if (why)
            return FAIL("%s: tensor 'owner' byte %llu (file offset %llu) = %u: %s", r->where,
                        (unsigned long long)j, (unsigned long long)(owner_off + j), o, why);
    }
    return CONURE_OK;
}

/* Points m's params and heads into the file mapping (see
 * cn_model_deserialize_mapped) when the file's payloads sit exactly where the
 * arena layout puts them: the backbone tensors at first_offset + 4 * arena
 * offset (the arena pads every tensor to 64 bytes, the file aligns payloads to
 * 64 bytes and the padding is validated zero), each head's bias right after
 * its weights.  The copies made while decoding are then freed. */
static int adopt_mapping(conure_model *m, uint8_t *map, size_t size, const tdesc *td, int n_td)
{
    if (!host_is_le() || n_td < m->n_tensors)
        return 0;
    const uint64_t base = td[0].offset;
    for (int32_t i = 0; i < m->n_tensors; i++)
        if (td[i].offset != base + 4 * (uint64_t)m->tensors[i].offset)
            return 0;
    if (base + 4 * (uint64_t)m->n_backbone > size)
        return 0;
    /* heads: task k's weight tensor follows the owner tensor, bias after it */
    int idx = m->n_tensors + 1;
    int32_t adopt_head[CN_MAX_TASKS] = {0};
    for (int32_t k = 0; k < m->n_tasks; k++) {
        const cn_task *t = &m->tasks[k];
        const tdesc *w = &td[idx++];
        int ok = w->offset + 4 * (uint64_t)t->head_numel <= size;
        if (t->kind == CONURE_TASK_NEXT_ITEM) {
            const tdesc *b = &td[idx++];
            ok = ok && b->offset == w->offset + w->nbytes;
        }
        adopt_head[k] = ok;
    }
    cn_free(m->params);
    m->params = (float *)(void *)(map + base);
    m->params_borrowed = 1;
    idx = m->n_tensors + 1;
    for (int32_t k = 0; k < m->n_tasks; k++) {
        cn_task *t = &m->tasks[k];
        const tdesc *w = &td[idx];
        idx += t->kind == CONURE_TASK_NEXT_ITEM ? 2 : 1;
        if (!adopt_head[k])
            continue;
        cn_free(t->head);
        t->head = (float *)(void *)(map + w->offset);
        t->head_borrowed = 1;
    }
    m->map_base = map;
    m->map_len = size;
    return 1;
}

static conure_status deserialize(reader *r, parsed *ps, conure_model **out, uint8_t *map,
                                 int *adopted)
{
    conure_status st = parse_header(r, ps);
    if (st == CONURE_OK)
        st = parse_modl(r, ps);
    if (st == CONURE_OK)
        st = parse_task(r, ps);
    if (st == CONURE_OK)
        st = parse_optm(r, ps);
    if (st == CONURE_OK)
        st = check_sizes_fit(r, ps);
    if (st != CONURE_OK)
        return st;

    conure_model *m = NULL;
    st = cn_model_alloc(&ps->cfg, &m);
    if (st != CONURE_OK) {
        if (st == CONURE_E_NOMEM)
            return st;
        char why[CN_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", cn_error_text());
        return FAIL("%s: cannot build a model of this configuration: %s", r->where, why);
    }
    for (int32_t i = 0; i < ps->n_tasks && st == CONURE_OK; i++) {
        cn_task *t = &m->tasks[i];
        memset(t, 0, sizeof *t);
        const cn_task *src = &ps->tasks[i];
        t->kind = src->kind;
        t->n_targets = src->n_targets;
        t->phase = src->phase;
        t->loss = src->loss;
        t->negatives = src->negatives;
        t->lr = src->lr;
        t->l2 = src->l2;
        t->rho = src->rho;
        t->release_ratio = src->release_ratio;
        t->beta1 = src->beta1;
        t->beta2 = src->beta2;
        t->eps = src->eps;
        t->dropout = src->dropout;
        t->tied = src->tied;
        st = cn_task_alloc_head(m, t, 0);
        if (st == CONURE_OK) {
            m->n_tasks = i + 1;
            if (t->head_numel != src->head_numel)
                st = FAIL("%s: task %d: head has %zu floats in this library, the file says %zu",
                          r->where, (int)i + 1, t->head_numel, src->head_numel);
        }
    }
    if (st == CONURE_OK && ps->with_opt)
        st = cn_model_ensure_training(m);
    tdesc *td = NULL;
    int n_td = 0;
    if (st == CONURE_OK)
        st = build_tensor_list(m, ps->with_opt, ps->opt_task, NULL, &td, &n_td);
    if (st == CONURE_OK)
        st = check_directory(r, ps, td, n_td);
    if (st == CONURE_OK)
        st = check_coverage(r, ps, td, n_td);
    for (int i = 0; i < n_td && st == CONURE_OK; i++) {
        uint32_t c = crc_of(r->p + td[i].offset, td[i].nbytes);
        if (c != td[i].crc)
            st = FAIL("%s: tensor '%s' payload checksum mismatch (offset %llu, %llu bytes: "
                      "stored 0x%08x, computed 0x%08x): corrupted file", r->where, td[i].name,
                      (unsigned long long)td[i].offset, (unsigned long long)td[i].nbytes,
                      td[i].crc, c);
        else
            payload_decode(&td[i], r->p + td[i].offset);
    }
    if (st == CONURE_OK)
        st = check_values(r, ps, m, td, n_td);
    if (st == CONURE_OK && map)
        *adopted = adopt_mapping(m, map, (size_t)r->size, td, n_td);
    free(td);
    for (int32_t k = 1; k <= m->n_tasks && st == CONURE_OK; k++) {
        const cn_task *t = &m->tasks[k - 1];
        if (t->tied && memcmp(t->head, m->params + m->tensors[0].offset,
                              sizeof(float) * (size_t)t->n_targets * (size_t)m->cfg.channels))
            st = FAIL("%s: task %d: flag tie_embedding is set but the head's W differs from the "
                      "item embedding", r->where, (int)k);
    }

    if (st == CONURE_OK) {
        m->backbone_frozen = ps->backbone_frozen;
        if (ps->with_opt) {
            m->phase_step = ps->phase_step;
            m->rng.state = ps->rng_state;
            m->rng.inc = ps->rng_inc;
        } else {
            /* no optimizer state: training resumes with fresh Adam moments */
            if (optimizer_task(m) > 0)
                cn_model_reset_adam(m, &m->tasks[m->n_tasks - 1]);
            m->phase_step = 0;
        }
    }
    for (int32_t k = 1; k <= m->n_tasks && st == CONURE_OK; k++)
        if (m->tasks[k - 1].phase == CONURE_PHASE_DONE)
            cn_task_release_training(&m->tasks[k - 1]);
    if (st == CONURE_OK && m->cfg.training_mode == CN_MODE_CONURE)
        for (int32_t k = 1; k <= m->n_tasks && st == CONURE_OK; k++)
            if (m->tasks[k - 1].phase == CONURE_PHASE_DONE)
                st = cn_task_build_conv_eff(m, k);
    if (st != CONURE_OK) {
        if (map && *adopted) { /* the caller unmaps: destroy must not */
            m->map_base = NULL;
            *adopted = 0;
        }
        cn_model_destroy(m);
        return st;
    }
    *out = m;
    return CONURE_OK;
}

conure_status cn_model_deserialize_where(const void *buf, size_t size, const char *where,
                                         conure_model **out)
{
    reader r = {buf, (uint64_t)size, where ? where : "model_load", 0};
    parsed *ps = calloc(1, sizeof *ps);
    if (!ps)
        return cn_fail(CONURE_E_NOMEM, "%s: out of memory", r.where);
    conure_status st = deserialize(&r, ps, out, NULL, NULL);
    free(ps);
    return st;
}

conure_status cn_model_deserialize_mapped(void *map, size_t size, const char *where,
                                          conure_model **out, int *adopted)
{
    reader r = {map, (uint64_t)size, where ? where : "model_load", 0};
    *adopted = 0;
    parsed *ps = calloc(1, sizeof *ps);
    if (!ps)
        return cn_fail(CONURE_E_NOMEM, "%s: out of memory", r.where);
    conure_status st = deserialize(&r, ps, out, map, adopted);
    free(ps);
    return st;
}

conure_status cn_model_deserialize(const void *buf, size_t size, conure_model **out)
{
    return cn_model_deserialize_where(buf, size, "model_load", out);
}
