/*
 * jasmin_sfu.media._fastpath: the per-viewer fan-out of one RTP packet in C.
 *
 * One fan-out per spatial layer (Producer.on_rtp passes the lanes of the
 * packet's layer); for VP8 simulcast a lane also adds its PictureID/TL0PICIDX
 * offsets to the payload descriptor (patch_vp8), so a viewer's ids continue
 * across layer switches (docs/media.md, "Layers").
 *
 * Producer.on_rtp (Python) parses the publisher's packet once and builds one
 * "tail" per extension profile (CSRCs + rewritten extension section +
 * payload). This module then does, for every C-eligible consumer ("lane"),
 * what Consumer.forward + SrtpSink.send do in Python: write the 12-byte
 * header in the viewer's SSRC/PT/sequence/timestamp space, append the tail,
 * SRTP-protect it with libsrtp on the viewer's own session, and sendto() it
 * on the viewer's UDP socket. All of it in one call, with the GIL held (the
 * SRTP session is also used by aiortc on the event-loop thread; we are on
 * that thread too), no Python objects created per copy.
 *
 * Measured on the project VM (bench/hotpath.py --fastpath): Python did this
 * in ~11 us per copy (header pack + bytes concat ~1.5 us, pylibsrtp protect
 * ~5.7 us with its buffer copies, uvloop sendto ~3.8 us, call overheads);
 * here the copy + rewrite is tens of ns and protect is libsrtp's own cost.
 *
 * libsrtp is not linked: pylibsrtp 1.0.0 carries libsrtp 2.x statically in
 * its cffi module and exports srtp_protect. aiortc_adapter.py (the one place
 * that touches private names) hands us the function pointer and the session's
 * srtp_t as integers, plus the Session object, which a Target keeps alive so
 * the srtp_t cannot be freed under us.
 *
 * Copies that go out on one socket (every viewer on the worker's shared UDP
 * port, media.rtc_udp_port) are sent in batches of up to FANOUT_BATCH with one
 * sendmmsg(2) per batch instead of one sendto(2) per copy: the kernel entry
 * was 84 % of the fan-out at 400 viewers (bench/README.md). Each copy keeps
 * its own buffer, address and accounting: a copy the kernel refuses is
 * counted on its target and the batch goes on from the next one.
 *
 * A Target owns its socket: it dup()s the fd it is given (F_DUPFD_CLOEXEC)
 * and closes that copy itself in close() or when freed. Without it a Target
 * kept the fd NUMBER of a socket aioice may close first (ICE closed, consent
 * expired); the kernel gives that number to the next accept()ed TCP socket,
 * and sendto(2) on a connected stream ignores the address: SRTP went into a
 * websocket. With the dup the number stays ours until close(), and a send
 * after aioice's close still goes out on the viewer's UDP socket. Copies are
 * batched by socket (st_dev, st_ino), not by fd number, since every Target on
 * the shared socket holds a dup of its own.
 *
 * Errors never raise: sendto failures (EAGAIN/ENOBUFS/ECONNREFUSED/...) and
 * protect failures are counted per lane and returned to the caller, which
 * counts them as drops.
 */

#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* sendmmsg; pyconfig.h defines it too */
#endif
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* libsrtp 2.x: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_octets);
 * the buffer needs SRTP_MAX_TRAILER_LEN (16-byte tag + 128-byte MKI) of room. */
typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_octets);
#define SRTP_MAX_TRAILER_LEN (16 + 128)
/* Largest RTP packet we forward (header + tail); UDP on a 1500-byte MTU
 * carries ~1200-byte WebRTC packets, loopback up to 64 KB. Bigger ones are
 * dropped and counted ("too_long"), never truncated. */
#define MAX_PACKET 8192
#define MAX_PROFILES 64

static unsigned char g_buf[MAX_PACKET + SRTP_MAX_TRAILER_LEN];

/* Copies on one fd sent per sendmmsg(2) call (Linux caps a call at UIO_MAXIOV = 1024). */
#define FANOUT_BATCH 64
#define SLOT_SIZE (MAX_PACKET + SRTP_MAX_TRAILER_LEN)
static unsigned char g_slots[FANOUT_BATCH][SLOT_SIZE];
/* sendmmsg calls made and datagrams they carried (read by batch_stats()). */
static unsigned long long g_mmsg_calls = 0;
static unsigned long long g_mmsg_datagrams = 0;

/* ------------------------------------------------------------------------ */
/* Target: one viewer leg's SRTP session + UDP socket + remote address.      */

typedef struct {
    PyObject_HEAD
    srtp_protect_fn protect;
    void *srtp;
    PyObject *keep; /* the pylibsrtp Session owning srtp (and anything else to keep alive) */
    int fd; /* our own dup of the socket's fd, closed by close()/dealloc; -1 when none */
    int open;
    dev_t sock_dev; /* the socket itself (batching key: dups of one socket differ in fd) */
    ino_t sock_ino;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    /* counters, read by Python for stats */
    unsigned long long sent;
    unsigned long long send_errors;
    unsigned long long eagain;
    unsigned long long refused;
    unsigned long long protect_errors;
} Target;

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
    memset(ss, 0, sizeof(*ss));
    if (port < 0 || port > 65535)
        return -1;
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof(*v4);
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

static int Target_init(Target *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"protect", "srtp", "keep", "fd", "host", "port", NULL};
    unsigned long long protect = 0, srtp = 0;
    PyObject *keep = NULL;
    int fd = -1, port = 0;
    const char *host = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KKOisi", kwlist, &protect, &srtp, &keep, &fd, &host, &port))
        return -1;
    if (protect == 0 || srtp == 0) {
        PyErr_SetString(PyExc_ValueError, "protect and srtp must be non-null addresses");
        return -1;
    }
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "fd must be an open socket");
        return -1;
    }
    if (parse_addr(host, port, &self->addr, &self->addrlen) < 0) {
        PyErr_Format(PyExc_ValueError, "not an IP address and port: %s %d", host, port);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (self->open && self->fd >= 0)
        close(self->fd); /* __init__ called again: drop the previous dup */
    self->protect = (srtp_protect_fn)(uintptr_t)protect;
    self->srtp = (void *)(uintptr_t)srtp;
    Py_INCREF(keep);
    Py_XSETREF(self->keep, keep);
    self->fd = own;
    self->sock_dev = st.st_dev;
    self->sock_ino = st.st_ino;
    self->open = 1;
    return 0;
}

static int Target_traverse(Target *self, visitproc visit, void *arg) {
    Py_VISIT(self->keep);
    return 0;
}

static int Target_clear(Target *self) {
    Py_CLEAR(self->keep);
    return 0;
}

static void release_fd(Target *self) {
    if (self->open && self->fd >= 0)
        close(self->fd);
    self->fd = -1;
}

static void Target_dealloc(Target *self) {
    PyObject_GC_UnTrack(self);
    release_fd(self);
    Target_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Target_close(Target *self, PyObject *Py_UNUSED(ignored)) {
    /* Close our dup: the socket is released once aioice has closed its fd too.
     * No packet goes out through this target again. */
    release_fd(self);
    self->open = 0;
    self->protect = NULL;
    self->srtp = NULL;
    Py_CLEAR(self->keep);
    Py_RETURN_NONE;
}

static PyMethodDef Target_methods[] = {
    {"close", (PyCFunction)Target_close, METH_NOARGS, "Stop sending through this target, release the session."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Target_members[] = {
    {"open", T_INT, offsetof(Target, open), READONLY, "True until close()"},
    {"fd", T_INT, offsetof(Target, fd), READONLY, "the target's own dup of the UDP socket's fd (-1 after close)"},
    {"sent", T_ULONGLONG, offsetof(Target, sent), READONLY, "datagrams sent"},
    {"send_errors", T_ULONGLONG, offsetof(Target, send_errors), READONLY, "sendto failures (all reasons)"},
    {"eagain", T_ULONGLONG, offsetof(Target, eagain), READONLY, "sendto EAGAIN/EWOULDBLOCK/ENOBUFS"},
    {"refused", T_ULONGLONG, offsetof(Target, refused), READONLY, "sendto ECONNREFUSED (ICMP from the viewer)"},
    {"protect_errors", T_ULONGLONG, offsetof(Target, protect_errors), READONLY, "srtp_protect failures"},
    {NULL},
};

static PyTypeObject TargetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "jasmin_sfu.media._fastpath.Target",
    .tp_doc = "One viewer leg: SRTP session, its own dup of the UDP socket fd, remote address.",
    .tp_basicsize = sizeof(Target),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Target_init,
    .tp_dealloc = (destructor)Target_dealloc,
    .tp_traverse = (traverseproc)Target_traverse,
    .tp_clear = (inquiry)Target_clear,
    .tp_methods = Target_methods,
    .tp_members = Target_members,
};

/* ------------------------------------------------------------------------ */
/* Lane: one consumer's rewrite state + its Target.                          */

typedef struct {
    PyObject_HEAD
    unsigned int ssrc;
    int payload_type;
    unsigned int seq_off; /* 16-bit, added mod 2^16 */
    unsigned int ts_off;  /* 32-bit, added mod 2^32 */
    int profile;
    /* VP8 simulcast: PictureID (mod 2^15, or 2^7 for a 7-bit id) and TL0PICIDX
     * (mod 2^8) offsets added in the payload descriptor, so the viewer's ids
     * continue across layer switches; vp8 = 0 leaves the payload alone. */
    int vp8;
    unsigned int pid_off;
    unsigned int tl0_off;
    PyObject *target; /* Target or None */
    unsigned long long packets;
    unsigned long long octets; /* tail bytes (what the Python path counts for SR) */
} Lane;

static int Lane_init(Lane *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ssrc", "payload_type", NULL};
    unsigned long ssrc = 0;
    int pt = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ki", kwlist, &ssrc, &pt))
        return -1;
    if (ssrc > 0xFFFFFFFFUL || pt < 0 || pt > 127) {
        PyErr_SetString(PyExc_ValueError, "ssrc must fit 32 bits and payload_type 0..127");
        return -1;
    }
    self->ssrc = (unsigned int)ssrc;
    self->payload_type = pt;
    Py_INCREF(Py_None);
    Py_XSETREF(self->target, Py_None);
    return 0;
}

static int Lane_traverse(Lane *self, visitproc visit, void *arg) {
    Py_VISIT(self->target);
    return 0;
}

static int Lane_clear(Lane *self) {
    Py_CLEAR(self->target);
    return 0;
}

static void Lane_dealloc(Lane *self) {
    PyObject_GC_UnTrack(self);
    Lane_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lane_get_target(Lane *self, void *closure) {
    PyObject *t = self->target ? self->target : Py_None;
    Py_INCREF(t);
    return t;
}

static int Lane_set_target(Lane *self, PyObject *value, void *closure) {
    if (value == NULL)
        value = Py_None;
    if (value != Py_None && !PyObject_TypeCheck(value, &TargetType)) {
        PyErr_SetString(PyExc_TypeError, "target must be a Target or None");
        return -1;
    }
    Py_INCREF(value);
    Py_XSETREF(self->target, value);
    return 0;
}

static int set_u32(PyObject *value, unsigned int *out, unsigned long long mask, const char *name) {
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "cannot delete %s", name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLongMask(value);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (unsigned int)(v & mask);
    return 0;
}

static PyObject *Lane_get_seq_off(Lane *self, void *c) { return PyLong_FromUnsignedLong(self->seq_off); }
static int Lane_set_seq_off(Lane *self, PyObject *v, void *c) { return set_u32(v, &self->seq_off, 0xFFFF, "seq_off"); }
static PyObject *Lane_get_ts_off(Lane *self, void *c) { return PyLong_FromUnsignedLong(self->ts_off); }
static int Lane_set_ts_off(Lane *self, PyObject *v, void *c) { return set_u32(v, &self->ts_off, 0xFFFFFFFFULL, "ts_off"); }
static PyObject *Lane_get_ssrc(Lane *self, void *c) { return PyLong_FromUnsignedLong(self->ssrc); }
static int Lane_set_ssrc(Lane *self, PyObject *v, void *c) { return set_u32(v, &self->ssrc, 0xFFFFFFFFULL, "ssrc"); }

static PyObject *Lane_get_pid_off(Lane *self, void *c) { return PyLong_FromUnsignedLong(self->pid_off); }
static int Lane_set_pid_off(Lane *self, PyObject *v, void *c) { return set_u32(v, &self->pid_off, 0x7FFF, "pid_off"); }
static PyObject *Lane_get_tl0_off(Lane *self, void *c) { return PyLong_FromUnsignedLong(self->tl0_off); }
static int Lane_set_tl0_off(Lane *self, PyObject *v, void *c) { return set_u32(v, &self->tl0_off, 0xFF, "tl0_off"); }

static PyObject *Lane_get_pt(Lane *self, void *c) { return PyLong_FromLong(self->payload_type); }
static int Lane_set_pt(Lane *self, PyObject *v, void *c) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete payload_type");
        return -1;
    }
    long pt = PyLong_AsLong(v);
    if (pt == -1 && PyErr_Occurred())
        return -1;
    if (pt < 0 || pt > 127) {
        PyErr_SetString(PyExc_ValueError, "payload_type must be 0..127");
        return -1;
    }
    self->payload_type = (int)pt;
    return 0;
}

static PyObject *Lane_get_profile(Lane *self, void *c) { return PyLong_FromLong(self->profile); }
static int Lane_set_profile(Lane *self, PyObject *v, void *c) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete profile");
        return -1;
    }
    long p = PyLong_AsLong(v);
    if (p == -1 && PyErr_Occurred())
        return -1;
    if (p < 0 || p >= MAX_PROFILES) {
        PyErr_Format(PyExc_ValueError, "profile must be 0..%d", MAX_PROFILES - 1);
        return -1;
    }
    self->profile = (int)p;
    return 0;
}

static PyGetSetDef Lane_getset[] = {
    {"target", (getter)Lane_get_target, (setter)Lane_set_target, "the Target packets go to (None: skipped)", NULL},
    {"seq_off", (getter)Lane_get_seq_off, (setter)Lane_set_seq_off, "sequence offset mod 2^16", NULL},
    {"ts_off", (getter)Lane_get_ts_off, (setter)Lane_set_ts_off, "timestamp offset mod 2^32", NULL},
    {"ssrc", (getter)Lane_get_ssrc, (setter)Lane_set_ssrc, "the viewer-side SSRC", NULL},
    {"payload_type", (getter)Lane_get_pt, (setter)Lane_set_pt, "the viewer-side payload type", NULL},
    {"profile", (getter)Lane_get_profile, (setter)Lane_set_profile, "index of the tail (extension profile)", NULL},
    {"pid_off", (getter)Lane_get_pid_off, (setter)Lane_set_pid_off, "VP8 PictureID offset mod 2^15", NULL},
    {"tl0_off", (getter)Lane_get_tl0_off, (setter)Lane_set_tl0_off, "VP8 TL0PICIDX offset mod 2^8", NULL},
    {NULL},
};

static PyMemberDef Lane_members[] = {
    {"packets", T_ULONGLONG, offsetof(Lane, packets), 0, "packets sent through C"},
    {"octets", T_ULONGLONG, offsetof(Lane, octets), 0, "tail octets sent through C"},
    {"vp8", T_INT, offsetof(Lane, vp8), 0, "patch the VP8 descriptor's ids by pid_off/tl0_off (0: no)"},
    {NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "jasmin_sfu.media._fastpath.Lane",
    .tp_doc = "One consumer's header rewrite state and the Target it sends to.",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Lane_init,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear,
    .tp_getset = Lane_getset,
    .tp_members = Lane_members,
};

/* ------------------------------------------------------------------------ */
/* The fan-out.                                                              */

typedef struct {
    int b0;
    const unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t pay; /* where the RTP payload starts in data (VP8 descriptor), -1: not given */
} Tail;

/* Parse tails: a sequence of (b0, bytes) or (b0, bytes, payload offset) as
 * Producer.on_rtp builds them (the offset only for VP8 simulcast producers). */
static int load_tails(PyObject *tails, Tail *out, Py_ssize_t *n_out) {
    PyObject *seq = PySequence_Fast(tails, "tails must be a sequence of (b0, bytes)");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_PROFILES) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "at most %d tails", MAX_PROFILES);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = items[i];
        Py_ssize_t size = PyTuple_Check(t) ? PyTuple_GET_SIZE(t) : 0;
        if ((size != 2 && size != 3) || !PyBytes_Check(PyTuple_GET_ITEM(t, 1))) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "each tail must be (int, bytes) or (int, bytes, int)");
            return -1;
        }
        out[i].pay = -1;
        if (size == 3) {
            Py_ssize_t pay = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 2));
            if (pay == -1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return -1;
            }
            out[i].pay = pay;
        }
        long b0 = PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
        if (b0 == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        out[i].b0 = (int)(b0 & 0xFF);
        /* The bytes stay alive: the caller holds the tails list for the call. */
        out[i].data = (const unsigned char *)PyBytes_AS_STRING(PyTuple_GET_ITEM(t, 1));
        out[i].len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(t, 1));
    }
    *n_out = n;
    Py_DECREF(seq);
    return 0;
}

/* Add the lane's offsets to the VP8 descriptor at p[pos..len) (RFC 7741 4.2):
 * a 15-bit PictureID stays 15 bits, a 7-bit one 7 bits; TL0PICIDX mod 2^8.
 * A truncated descriptor is left as it is (the Python path does the same). */
static inline void patch_vp8(unsigned char *p, Py_ssize_t len, Py_ssize_t pos, unsigned int pid_off,
                             unsigned int tl0_off) {
    if (pos < 0 || pos + 1 >= len || !(p[pos] & 0x80))
        return;
    unsigned char x = p[pos + 1];
    pos += 2;
    if (x & 0x80) {
        if (pos >= len)
            return;
        if (p[pos] & 0x80) {
            if (pos + 1 >= len)
                return;
            unsigned int pid = ((((unsigned int)(p[pos] & 0x7F) << 8) | p[pos + 1]) + pid_off) & 0x7FFF;
            p[pos] = (unsigned char)(0x80 | (pid >> 8));
            p[pos + 1] = (unsigned char)pid;
            pos += 2;
        } else {
            p[pos] = (unsigned char)((p[pos] + pid_off) & 0x7F);
            pos += 1;
        }
    }
    if ((x & 0x40) && pos < len)
        p[pos] = (unsigned char)(p[pos] + tl0_off);
}

static inline Py_ssize_t write_packet(unsigned char *buf, const Lane *l, const Tail *t, int b1, unsigned int seq,
                                      unsigned int ts) {
    unsigned int s = (seq + l->seq_off) & 0xFFFF;
    unsigned int x = ts + l->ts_off; /* mod 2^32 by unsigned arithmetic */
    unsigned int ssrc = l->ssrc;
    buf[0] = (unsigned char)t->b0;
    buf[1] = (unsigned char)((b1 & 0x80) | l->payload_type);
    buf[2] = (unsigned char)(s >> 8);
    buf[3] = (unsigned char)s;
    buf[4] = (unsigned char)(x >> 24);
    buf[5] = (unsigned char)(x >> 16);
    buf[6] = (unsigned char)(x >> 8);
    buf[7] = (unsigned char)x;
    buf[8] = (unsigned char)(ssrc >> 24);
    buf[9] = (unsigned char)(ssrc >> 16);
    buf[10] = (unsigned char)(ssrc >> 8);
    buf[11] = (unsigned char)ssrc;
    memcpy(buf + 12, t->data, (size_t)t->len);
    if (l->vp8 && t->pay >= 0)
        patch_vp8(buf + 12, t->len, t->pay, l->pid_off, l->tl0_off);
    return 12 + t->len;
}

static inline void count_send_error(Target *tg, int e) {
    tg->send_errors++;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS)
        tg->eagain++;
    else if (e == ECONNREFUSED)
        tg->refused++;
}

/* SRTP-protect buf in place; the protected length, or -1 (counted). */
static inline int protect_only(Target *tg, unsigned char *buf, Py_ssize_t plain_len) {
    int len = (int)plain_len;
    if (tg->protect(tg->srtp, buf, &len) != 0) {
        tg->protect_errors++;
        return -1;
    }
    return len;
}

/* Send one rewritten packet through its target; 1 sent, 0 failed (counted). */
static inline int protect_and_send(Target *tg, unsigned char *buf, Py_ssize_t plain_len) {
    int len = protect_only(tg, buf, plain_len);
    if (len < 0)
        return 0;
    ssize_t r;
    do {
        r = sendto(tg->fd, buf, (size_t)len, 0, (struct sockaddr *)&tg->addr, tg->addrlen);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        count_send_error(tg, errno);
        return 0;
    }
    tg->sent++;
    return 1;
}

/* A batch of protected copies waiting for one sendmmsg on one fd. */
typedef struct {
    int fd; /* the first copy's target's fd: all copies in the batch are on its socket */
    dev_t sock_dev;
    ino_t sock_ino;
    int n;
    Lane *lane[FANOUT_BATCH];
    Target *target[FANOUT_BATCH];
    Py_ssize_t plain[FANOUT_BATCH];
    Py_ssize_t tail_len[FANOUT_BATCH];
    struct mmsghdr msgs[FANOUT_BATCH];
    struct iovec iov[FANOUT_BATCH];
} Batch;

static Batch g_batch;

typedef struct {
    long long sent, sent_bytes, failed;
} Tally;

static inline void copy_sent(Tally *t, Lane *l, Target *tg, Py_ssize_t plain, Py_ssize_t tail_len) {
    tg->sent++;
    t->sent++;
    t->sent_bytes += plain;
    l->packets++;
    l->octets += (unsigned long long)tail_len;
}

/* Send the batch: one sendmmsg per run; a copy the kernel refuses (the call
 * returns -1 for the first unsent one) is counted on its target and skipped,
 * the rest are sent by the next call (sendmmsg(2): an error after the first
 * datagram ends the call with the count sent so far). One copy: sendto. */
static void flush_batch(Batch *b, Tally *t) {
    int i = 0;
    if (b->n == 1) {
        ssize_t r;
        do {
            r = sendto(b->fd, b->iov[0].iov_base, b->iov[0].iov_len, 0, b->msgs[0].msg_hdr.msg_name,
                       b->msgs[0].msg_hdr.msg_namelen);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            count_send_error(b->target[0], errno);
            t->failed++;
        } else {
            copy_sent(t, b->lane[0], b->target[0], b->plain[0], b->tail_len[0]);
        }
        b->n = 0;
        return;
    }
    while (i < b->n) {
        int r = sendmmsg(b->fd, &b->msgs[i], (unsigned int)(b->n - i), 0);
        g_mmsg_calls++;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            count_send_error(b->target[i], errno);
            t->failed++;
            i++;
            continue;
        }
        g_mmsg_datagrams += (unsigned long long)r;
        for (int k = i; k < i + r; k++)
            copy_sent(t, b->lane[k], b->target[k], b->plain[k], b->tail_len[k]);
        i += r;
    }
    b->n = 0;
}

PyDoc_STRVAR(fanout_doc,
             "fanout(lanes, tails, b1, seq, ts) -> (sent, sent_bytes, failed)\n\n"
             "For every Lane in the tuple ``lanes``: rewrite the header (SSRC, PT,\n"
             "marker from b1, seq/ts plus offsets), append tails[lane.profile],\n"
             "SRTP-protect and sendto. Never raises for a send or protect error:\n"
             "those count in ``failed``. A lane without an open target is counted\n"
             "in ``failed`` too (the Python path counts that as send_failed).\n"
             "sent_bytes counts plaintext bytes, as the Python path does.");

static PyObject *fp_fanout(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "fanout(lanes, tails, b1, seq, ts)");
        return NULL;
    }
    PyObject *lanes = args[0];
    if (!PyTuple_Check(lanes)) {
        PyErr_SetString(PyExc_TypeError, "lanes must be a tuple");
        return NULL;
    }
    Tail tails[MAX_PROFILES];
    Py_ssize_t ntails = 0;
    if (load_tails(args[1], tails, &ntails) < 0)
        return NULL;
    long b1 = PyLong_AsLong(args[2]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[3]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[4]);
    if (PyErr_Occurred())
        return NULL;

    Py_ssize_t n = PyTuple_GET_SIZE(lanes);
    Tally tally = {0, 0, 0};
    Batch *b = &g_batch;
    b->n = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyTuple_GET_ITEM(lanes, i);
        if (Py_TYPE(o) != &LaneType) {
            tally.failed++;
            continue;
        }
        Lane *l = (Lane *)o;
        if (l->profile >= ntails || l->target == NULL || l->target == Py_None) {
            tally.failed++;
            continue;
        }
        Target *tg = (Target *)l->target;
        if (!tg->open) {
            tally.failed++;
            continue;
        }
        const Tail *t = &tails[l->profile];
        if (t->len + 12 > MAX_PACKET) {
            tally.failed++;
            continue;
        }
        /* Copies for another socket, or a full batch: send what is waiting first. */
        if (b->n > 0 && (b->sock_ino != tg->sock_ino || b->sock_dev != tg->sock_dev || b->n == FANOUT_BATCH))
            flush_batch(b, &tally);
        unsigned char *buf = g_slots[b->n];
        Py_ssize_t plain = write_packet(buf, l, t, (int)b1, (unsigned int)seq, (unsigned int)ts);
        int len = protect_only(tg, buf, plain);
        if (len < 0) {
            tally.failed++;
            continue;
        }
        int k = b->n++;
        if (k == 0) {
            b->fd = tg->fd;
            b->sock_dev = tg->sock_dev;
            b->sock_ino = tg->sock_ino;
        }
        b->lane[k] = l;
        b->target[k] = tg;
        b->plain[k] = plain;
        b->tail_len[k] = t->len;
        b->iov[k].iov_base = buf;
        b->iov[k].iov_len = (size_t)len;
        memset(&b->msgs[k], 0, sizeof(b->msgs[k]));
        b->msgs[k].msg_hdr.msg_name = &tg->addr;
        b->msgs[k].msg_hdr.msg_namelen = tg->addrlen;
        b->msgs[k].msg_hdr.msg_iov = &b->iov[k];
        b->msgs[k].msg_hdr.msg_iovlen = 1;
    }
    if (b->n > 0)
        flush_batch(b, &tally);
    return Py_BuildValue("(LLL)", tally.sent, tally.sent_bytes, tally.failed);
}

PyDoc_STRVAR(rewrite_doc,
             "rewrite(lane, tail, b1, seq, ts) -> bytes\n\n"
             "The plaintext packet fanout() would protect and send for ``lane``\n"
             "(for tests: must equal the Python path's bytes).");

static PyObject *fp_rewrite(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || Py_TYPE(args[0]) != &LaneType) {
        PyErr_SetString(PyExc_TypeError, "rewrite(lane, tail, b1, seq, ts)");
        return NULL;
    }
    PyObject *one = PyTuple_Pack(1, args[1]);
    if (one == NULL)
        return NULL;
    Tail t;
    Py_ssize_t nt = 0;
    int rc = load_tails(one, &t, &nt);
    if (rc < 0) {
        Py_DECREF(one);
        return NULL;
    }
    long b1 = PyLong_AsLong(args[2]);
    unsigned long seq = PyLong_AsUnsignedLongMask(args[3]);
    unsigned long ts = PyLong_AsUnsignedLongMask(args[4]);
    if (PyErr_Occurred() || t.len + 12 > MAX_PACKET) {
        Py_DECREF(one);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "packet too long");
        return NULL;
    }
    unsigned char buf[MAX_PACKET];
    Py_ssize_t plain = write_packet(buf, (Lane *)args[0], &t, (int)b1, (unsigned int)seq, (unsigned int)ts);
    Py_DECREF(one);
    return PyBytes_FromStringAndSize((const char *)buf, plain);
}

PyDoc_STRVAR(send_doc,
             "send(target, packet) -> bool\n\n"
             "Protect and send one already-rewritten RTP packet (NACK replies,\n"
             "cached keyframes); False when it was not sent (counted on target).");

static PyObject *fp_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || Py_TYPE(args[0]) != &TargetType || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "send(target, packet: bytes)");
        return NULL;
    }
    Target *tg = (Target *)args[0];
    Py_ssize_t n = PyBytes_GET_SIZE(args[1]);
    if (!tg->open || n > MAX_PACKET)
        Py_RETURN_FALSE;
    memcpy(g_buf, PyBytes_AS_STRING(args[1]), (size_t)n);
    if (protect_and_send(tg, g_buf, n))
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(batch_stats_doc,
             "batch_stats() -> (sendmmsg_calls, datagrams)\n\n"
             "sendmmsg(2) calls fanout() made since the module loaded, and the\n"
             "datagrams they sent (copies on a socket of their own go by sendto\n"
             "and count in neither).");

static PyObject *fp_batch_stats(PyObject *mod, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(KK)", g_mmsg_calls, g_mmsg_datagrams);
}

static PyMethodDef fp_methods[] = {
    {"batch_stats", (PyCFunction)fp_batch_stats, METH_NOARGS, batch_stats_doc},
    {"fanout", (PyCFunction)(void (*)(void))fp_fanout, METH_FASTCALL, fanout_doc},
    {"rewrite", (PyCFunction)(void (*)(void))fp_rewrite, METH_FASTCALL, rewrite_doc},
    {"send", (PyCFunction)(void (*)(void))fp_send, METH_FASTCALL, send_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fp_module = {
    PyModuleDef_HEAD_INIT, "jasmin_sfu.media._fastpath",
    "Per-viewer RTP fan-out in C: rewrite, SRTP protect (libsrtp via pylibsrtp), sendto or sendmmsg.", -1, fp_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&TargetType) < 0 || PyType_Ready(&LaneType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fp_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&TargetType);
    if (PyModule_AddObject(m, "Target", (PyObject *)&TargetType) < 0) {
        Py_DECREF(&TargetType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LaneType);
    if (PyModule_AddObject(m, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(&LaneType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET);
    PyModule_AddIntConstant(m, "MAX_PROFILES", MAX_PROFILES);
    PyModule_AddIntConstant(m, "FANOUT_BATCH", FANOUT_BATCH);
    return m;
}
