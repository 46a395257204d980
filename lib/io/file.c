/* Model files on disk: atomic save (temp file, fsync, rename, fsync of the
 * directory) and load (read-only mmap, or read() where mmap is not possible),
 * plus the exported save/load API.  The bytes are produced and validated by
 * format.c; see docs/file-format.md. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "io/io.h"
#include "model/model.h"

void (*cn_io_test_before_rename)(const char *tmp_path) = NULL;

#define STAGE_BYTES (1u << 20)

/* ------------------------------------------------------------------------ */
/* Writing.                                                                  */
/* ------------------------------------------------------------------------ */

static conure_status write_all(int fd, const uint8_t *p, size_t len, const char *tmp)
{
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return cn_fail(CONURE_E_IO, "model_save: cannot write '%s': %s", tmp,
                           strerror(errno));
        }
        if (k == 0)
            return cn_fail(CONURE_E_IO, "model_save: cannot write '%s': no progress", tmp);
        p += k;
        len -= (size_t)k;
    }
    return CONURE_OK;
}

/* Collects small writes into 1 MiB blocks; large ones go straight through. */
typedef struct fd_sink {
    int fd;
    const char *tmp;
    uint8_t *stage;
    size_t fill;
    uint64_t total;
} fd_sink;

static conure_status fd_flush(fd_sink *s)
{
    conure_status st = write_all(s->fd, s->stage, s->fill, s->tmp);
    s->fill = 0;
    return st;
}

static conure_status fd_write(void *ctx, const void *data, size_t len)
{
    fd_sink *s = ctx;
    s->total += len;
    if (len <= STAGE_BYTES - s->fill) {
        memcpy(s->stage + s->fill, data, len);
        s->fill += len;
        return CONURE_OK;
    }
    conure_status st = fd_flush(s);
    if (st != CONURE_OK)
        return st;
    if (len < STAGE_BYTES) {
        memcpy(s->stage, data, len);
        s->fill = len;
        return CONURE_OK;
    }
    return write_all(s->fd, data, len, s->tmp);
}

/* The process umask, read without changing it (umask(2) can only be read by
 * setting it, which races with other threads creating files): Linux reports
 * it in /proc/self/status since 4.7.  Elsewhere assume the common 022. */
static mode_t current_umask(void)
{
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return mask;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned v;
        if (strncmp(line, "Umask:", 6) == 0 && sscanf(line + 6, "%o", &v) == 1) {
            mask = (mode_t)(v & 0777);
            break;
        }
    }
    fclose(f);
    return mask;
}

/* Directory part of path ("." if none), in a new string. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = (size_t)(slash - path);
    if (n == 0)
        n = 1;  /* "/file" -> "/" */
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

static conure_status save_file(const conure_model *m, const char *path, uint32_t flags)
{
    if (path[0] == '\0')
        return cn_fail(CONURE_E_IO, "model_save: path is empty");
    struct stat old;
    int have_old = stat(path, &old) == 0;
    if (have_old && S_ISDIR(old.st_mode))
        return cn_fail(CONURE_E_IO, "model_save: cannot save to '%s': %s", path,
                       strerror(EISDIR));

    size_t need = 0;
    conure_status st = cn_model_serialize_ex(m, flags, NULL, NULL, &need);
    if (st != CONURE_OK)
        return st;

    size_t plen = strlen(path);
    static const char suffix[] = ".tmp.XXXXXX";
    char *tmp = malloc(plen + sizeof suffix);
    char *dir = dir_of(path);
    uint8_t *stage = malloc(STAGE_BYTES);
    if (!tmp || !dir || !stage) {
        free(tmp);
        free(dir);
        free(stage);
        return cn_fail(CONURE_E_NOMEM, "model_save: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);

    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = cn_fail(CONURE_E_IO, "model_save: cannot create temporary file '%s': %s", tmp,
                     strerror(errno));
        goto out;
    }
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    /* mkstemp creates mode 0600: an existing file keeps its mode, a new one
     * gets 0666 less the umask, as open(2) would give it.  A file system
     * without modes may refuse: not an error. */
    (void)fchmod(fd, have_old ? (old.st_mode & 0777) : (0666 & ~current_umask()));

    fd_sink fs = {fd, tmp, stage, 0, 0};
    cn_io_sink sink = {fd_write, &fs};
    size_t again = 0;
    st = cn_model_serialize_ex(m, flags, NULL, &sink, &again);
    if (st == CONURE_OK)
        st = fd_flush(&fs);
    if (st == CONURE_OK && (fs.total != need || again != need))
        st = cn_fail(CONURE_E_INTERNAL, "model_save: wrote %llu bytes, planned %zu",
                     (unsigned long long)fs.total, need);
    if (st == CONURE_OK) {
        while (fsync(fd) != 0) {
            if (errno == EINTR)
                continue;
            st = cn_fail(CONURE_E_IO, "model_save: cannot fsync '%s': %s", tmp, strerror(errno));
            break;
        }
    }
    if (close(fd) != 0 && st == CONURE_OK && errno != EINTR)
        st = cn_fail(CONURE_E_IO, "model_save: cannot close '%s': %s", tmp, strerror(errno));
    fd = -1;
    if (st == CONURE_OK && cn_io_test_before_rename)
        cn_io_test_before_rename(tmp);
    if (st == CONURE_OK && rename(tmp, path) != 0)
        st = cn_fail(CONURE_E_IO, "model_save: cannot rename '%s' to '%s': %s", tmp, path,
                     strerror(errno));
    if (st != CONURE_OK) {
        unlink(tmp);
        goto out;
    }
    /* make the rename itself durable */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        st = cn_fail(CONURE_E_IO, "model_save: saved '%s' but cannot open its directory '%s' "
                     "to fsync it: %s", path, dir, strerror(errno));
        goto out;
    }
    while (fsync(dfd) != 0) {
        if (errno == EINTR)
            continue;
        if (errno != EINVAL && errno != ENOTSUP)  /* file systems without directory fsync */
            st = cn_fail(CONURE_E_IO, "model_save: saved '%s' but cannot fsync directory '%s': "
                         "%s", path, dir, strerror(errno));
        break;
    }
    close(dfd);
out:
    free(tmp);
    free(dir);
    free(stage);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Reading.                                                                  */
/* ------------------------------------------------------------------------ */

/* read() until EOF into a growing buffer (pipes, character devices, and
 * regular files where mmap failed). */
static conure_status read_all(int fd, const char *path, size_t hint, uint8_t **buf_out,
                              size_t *len_out)
{
    size_t cap = hint > 0 ? hint + 1 : 65536, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return cn_fail(CONURE_E_NOMEM, "model_load: out of memory reading '%s'", path);
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2) {
                free(buf);
                return cn_fail(CONURE_E_NOMEM, "model_load: '%s' is too large", path);
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return cn_fail(CONURE_E_NOMEM, "model_load: out of memory reading '%s'", path);
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            return cn_fail(CONURE_E_IO, "model_load: cannot read '%s': %s", path, strerror(e));
        }
        if (k == 0)
            break;
        len += (size_t)k;
    }
    *buf_out = buf;
    *len_out = len;
    return CONURE_OK;
}

static conure_status load_file(const char *path, conure_model **out)
{
    if (path[0] == '\0')
        return cn_fail(CONURE_E_IO, "model_load: path is empty");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cn_fail(CONURE_E_IO, "model_load: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return cn_fail(CONURE_E_IO, "model_load: cannot stat '%s': %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return cn_fail(CONURE_E_IO, "model_load: cannot load '%s': %s", path, strerror(EISDIR));
    }

    size_t wlen = strlen(path) + 16;
    char *where = malloc(wlen);
    if (!where) {
        close(fd);
        return cn_fail(CONURE_E_NOMEM, "model_load: out of memory");
    }
    memcpy(where, "model_load: ", 12);
    memcpy(where + 12, path, strlen(path) + 1);

    conure_status st;
    if (S_ISREG(sb.st_mode) && sb.st_size == 0) {
        st = cn_fail(CONURE_E_FORMAT, "%s: empty file (0 bytes): not a model file", where);
    } else if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size <= SIZE_MAX) {
        size_t len = (size_t)sb.st_size;
        /* private and writable: pages stay shared with the page cache (and
         * every process serving this file) until the model writes them */
        void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            int adopted = 0;
            st = cn_model_deserialize_mapped(map, len, where, out, &adopted);
            if (!adopted)
                munmap(map, len);
        } else {
            uint8_t *buf = NULL;
            st = read_all(fd, path, len, &buf, &len);
            if (st == CONURE_OK) {
                st = cn_model_deserialize_where(buf, len, where, out);
                free(buf);
            }
        }
    } else if (S_ISREG(sb.st_mode)) {
        st = cn_fail(CONURE_E_NOMEM, "%s: file too large for this address space", where);
    } else {
        uint8_t *buf = NULL;
        size_t len = 0;
        st = read_all(fd, path, 0, &buf, &len);
        if (st == CONURE_OK) {
            st = cn_model_deserialize_where(buf, len, where, out);
            free(buf);
        }
    }
    close(fd);
    free(where);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Exported API.                                                             */
/* ------------------------------------------------------------------------ */

static conure_status check_flags(uint32_t flags, const char *fn)
{
    if (flags & ~(uint32_t)CONURE_SAVE_OPTIMIZER)
        return cn_fail(CONURE_E_INVALID_ARG, "%s: unknown flags 0x%x (only CONURE_SAVE_OPTIMIZER "
                       "= 0x%x is defined)", fn, (unsigned)flags, (unsigned)CONURE_SAVE_OPTIMIZER);
    return CONURE_OK;
}

static conure_status finish_load(conure_status st, const conure_options *options,
                                 conure_model *m, const char *fn, conure_model **out)
{
    if (st != CONURE_OK)
        return st;
    st = cn_model_apply_runtime(m, options, fn);
    if (st != CONURE_OK) {
        cn_model_destroy(m);
        return st;
    }
    *out = m;
    return CONURE_OK;
}

CONURE_API conure_status conure_model_save(const conure_model *model, const char *path,
                                           uint32_t flags)
{
    cn_clear_error();
    if (!model)
        return cn_fail(CONURE_E_NULL_ARG, "model_save: model is NULL");
    conure_status st;
    if (!path)
        st = cn_fail(CONURE_E_NULL_ARG, "model_save: path is NULL");
    else if ((st = check_flags(flags, "model_save")) == CONURE_OK)
        st = save_file(model, path, flags);
    if (st != CONURE_OK)
        cn_model_record_error(model);
    return st;
}

CONURE_API conure_status conure_model_save_size(const conure_model *model, uint32_t flags,
                                                size_t *size)
{
    cn_clear_error();
    if (!model)
        return cn_fail(CONURE_E_NULL_ARG, "model_save_size: model is NULL");
    conure_status st;
    if (!size)
        st = cn_fail(CONURE_E_NULL_ARG, "model_save_size: size is NULL");
    else if ((st = check_flags(flags, "model_save_size")) == CONURE_OK) {
        size_t n = 0;
        st = cn_model_serialize(model, flags, NULL, 0, &n);
        if (st == CONURE_OK)
            *size = n;
    }
    if (st != CONURE_OK)
        cn_model_record_error(model);
    return st;
}

CONURE_API conure_status conure_model_save_buffer(const conure_model *model, uint32_t flags,
                                                  void *buf, size_t cap, size_t *written)
{
    cn_clear_error();
    if (!model)
        return cn_fail(CONURE_E_NULL_ARG, "model_save_buffer: model is NULL");
    conure_status st;
    if (!buf)
        st = cn_fail(CONURE_E_NULL_ARG, "model_save_buffer: buf is NULL");
    else if (!written)
        st = cn_fail(CONURE_E_NULL_ARG, "model_save_buffer: written is NULL");
    else if ((st = check_flags(flags, "model_save_buffer")) == CONURE_OK) {
        size_t n = 0;
        st = cn_model_serialize(model, flags, buf, cap, &n);
        if (st == CONURE_OK)
            *written = n;
    }
    if (st != CONURE_OK)
        cn_model_record_error(model);
    return st;
}

CONURE_API conure_status conure_model_load(const char *path, const conure_options *options,
                                           conure_model **out)
{
    cn_clear_error();
    if (!path)
        return cn_fail(CONURE_E_NULL_ARG, "model_load: path is NULL");
    if (!out)
        return cn_fail(CONURE_E_NULL_ARG, "model_load: out is NULL");
    if (options) {
        conure_status st = cn_options_check_scope(options, CN_SCOPE_RUNTIME, "model_load");
        if (st != CONURE_OK)
            return st;
    }
    conure_model *m = NULL;
    conure_status st = load_file(path, &m);
    return finish_load(st, options, m, "model_load", out);
}

CONURE_API conure_status conure_model_load_buffer(const void *buf, size_t size,
                                                  const conure_options *options,
                                                  conure_model **out)
{
    cn_clear_error();
    if (!buf)
        return cn_fail(CONURE_E_NULL_ARG, "model_load_buffer: buf is NULL");
    if (!out)
        return cn_fail(CONURE_E_NULL_ARG, "model_load_buffer: out is NULL");
    if (options) {
        conure_status st = cn_options_check_scope(options, CN_SCOPE_RUNTIME, "model_load_buffer");
        if (st != CONURE_OK)
            return st;
    }
    conure_model *m = NULL;
    conure_status st = cn_model_deserialize_where(buf, size, "model_load_buffer", &m);
    return finish_load(st, options, m, "model_load_buffer", out);
}
