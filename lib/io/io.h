/* Model files (internal): serialisation and validation (format.c), atomic
 * file save and mmap load (file.c).  The format is documented field by field
 * in docs/file-format.md; keep the two in step. */
#ifndef CN_IO_H
#define CN_IO_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* Format version written by this library.  A reader accepts every file of
 * the same major version (older minors, and newer minors by skipping what it
 * does not know) and refuses other majors with CONURE_E_VERSION. */
#define CN_FILE_MAJOR 1
#define CN_FILE_MINOR 0

#define CN_FILE_MAGIC "\x89" "CNR\r\n\x1a\n"  /* 8 bytes, no NUL stored */
#define CN_FILE_MAGIC_LEN 8
#define CN_FILE_HEADER_SIZE 64
#define CN_FILE_SECTION_ENTRY 32
#define CN_FILE_TASK_ENTRY 64
#define CN_TASK_FLAG_TIED 1u  /* task entry flags (byte 60): head W is the item embedding */
#define CN_FILE_TDIR_ENTRY 112
#define CN_FILE_TENSOR_ALIGN 64
#define CN_FILE_SECTION_ALIGN 8
#define CN_FILE_MAX_SECTIONS 64
#define CN_FILE_NAME_LEN 48

/* Section tags: four ASCII characters, stored as a little-endian u32 whose
 * first byte in the file is the first character. */
#define CN_TAG(a, b, c, d) \
    ((uint32_t)(a) | ((uint32_t)(b) << 8) | ((uint32_t)(c) << 16) | ((uint32_t)(d) << 24))
#define CN_SEC_MODL CN_TAG('M', 'O', 'D', 'L')
#define CN_SEC_TASK CN_TAG('T', 'A', 'S', 'K')
#define CN_SEC_OPTM CN_TAG('O', 'P', 'T', 'M')
#define CN_SEC_TDIR CN_TAG('T', 'D', 'I', 'R')
/* Section flag: a reader that does not know this tag must refuse the file. */
#define CN_SEC_F_REQUIRED 1u
/* Header flag: the OPTM section and optimizer tensors are present. */
#define CN_HDR_F_OPTIMIZER 1u

#define CN_DTYPE_F32 1u
#define CN_DTYPE_U8 2u

/* Extra knobs for the writer, used by tests and the fuzz corpus generator
 * to produce files a future writer could produce.  NULL = plain file. */
typedef struct cn_io_extra_section {
    uint32_t tag;
    uint32_t flags;
    const void *data;
    size_t len;
} cn_io_extra_section;

typedef struct cn_io_write_opts {
    int minor;  /* minor version to stamp into the header; -1 = CN_FILE_MINOR */
    int major;  /* major version to stamp; -1 = CN_FILE_MAJOR (tests only) */
    const cn_io_extra_section *extra;  /* written after the known sections */
    int n_extra;
} cn_io_write_opts;

/* Byte sink for the streaming writer: write() returns CONURE_OK or a
 * failure status after recording a message with cn_fail(). */
typedef struct cn_io_sink {
    conure_status (*write)(void *ctx, const void *data, size_t len);
    void *ctx;
} cn_io_sink;

/* Serialises m into buf (cap bytes).  buf == NULL only computes the size.
 * flags: 0 or CONURE_SAVE_OPTIMIZER.  *size_out gets the exact size either
 * way; if buf is non-NULL and cap is too small, returns
 * CONURE_E_BUFFER_TOO_SMALL and writes nothing.  Deterministic: the same
 * model and flags always give the same bytes. */
conure_status cn_model_serialize(const conure_model *m, uint32_t flags, void *buf, size_t cap,
                                 size_t *size_out);
/* The general writer: size first (sink NULL), or stream to a sink. */
conure_status cn_model_serialize_ex(const conure_model *m, uint32_t flags,
                                    const cn_io_write_opts *opts, const cn_io_sink *sink,
                                    size_t *size_out);

/* Validates size bytes at buf completely and builds a new model (runtime
 * settings not applied: the caller does that).  On failure returns
 * CONURE_E_FORMAT / CONURE_E_VERSION / CONURE_E_NOMEM with a message and
 * *out is untouched; nothing partial escapes. */
conure_status cn_model_deserialize(const void *buf, size_t size, conure_model **out);
/* The same, with `where` ("model_load", "model_load: /path/x") heading every
 * message. */
conure_status cn_model_deserialize_where(const void *buf, size_t size, const char *where,
                                         conure_model **out);
/* The same from a private, writable (copy-on-write) file mapping of `size`
 * bytes at map: on success, when the host is little-endian and the file lays
 * the backbone out exactly as the model's arena (as this library writes it),
 * the model's params and heads point into the mapping and the model owns it
 * (*adopted = 1: cn_model_destroy unmaps it); otherwise they are copied and
 * *adopted = 0 (the caller unmaps). */
conure_status cn_model_deserialize_mapped(void *map, size_t size, const char *where,
                                          conure_model **out, int *adopted);

/* Test hook (file.c): when non-NULL, the atomic save calls it after the
 * temporary file is written and fsynced, just before rename().  The crash
 * test sets it in a forked child to a function that raises SIGKILL.  Never
 * set by the library itself. */
extern void (*cn_io_test_before_rename)(const char *tmp_path);

#endif
