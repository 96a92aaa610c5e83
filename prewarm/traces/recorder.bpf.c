// SPDX-License-Identifier: GPL-2.0
/*
 * prewarm's eBPF recorder: what a render's process tree reads, counted in kernel maps.
 * Compiled by clang and loaded by libbpf from `prewarm/traces/ebpf.py`, which explains the design.
 *
 * Everything happens at a call's entry, on the BTF-typed raw `sys_enter` tracepoint, which hands
 * the program the call's registers. A `syscalls:sys_enter_pread64` tracepoint copies every call's
 * arguments into a perf buffer before any program runs (an EMPTY program there made a pread loop
 * 1.38x slower, 2.0x on 8 threads), and any `sys_exit` hook puts every system call of the machine
 * through the exit tracing path too (measured: about +50 ns a call). A read of a regular file
 * returns min(count, size - offset), so its entry says what its exit would; the names of opens,
 * stats, listings and directory changes go to user space at entry, which tells from the file
 * system whether they named something and what (see ebpf.py).
 *
 * x86_64 only: the system call numbers and `struct pt_regs` below are that ABI's.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define S_IFMT 0xf000
#define S_IFREG 0x8000
#define AT_FDCWD -100
#define PATH_MAX 4096
#define MAX_IOV 64      /* buffers of a vectored read added up; more are left out of its length */
#define RECENT 16384    /* reads each CPU remembers (512 KiB each), so that a read made again skips the hash map */

/* The floor of `bench/capture.py`: the same programs on the same tracepoints, returning at once. */
#ifdef FLOOR
#define FLOOR_RETURN() return 0
#else
#define FLOOR_RETURN()
#endif

/* Kernel structures, only the fields read: libbpf moves each field to this kernel's offset (CO-RE). */
struct super_block { __u32 s_dev; } __attribute__((preserve_access_index));
struct inode { __u16 i_mode; unsigned long i_ino; struct super_block *i_sb; long long i_size; }
    __attribute__((preserve_access_index));
struct file { struct inode *f_inode; long long f_pos; } __attribute__((preserve_access_index));
struct fdtable { unsigned int max_fds; struct file **fd; } __attribute__((preserve_access_index));
struct files_struct { struct fdtable *fdt; } __attribute__((preserve_access_index));
struct dentry { struct inode *d_inode; } __attribute__((preserve_access_index));
struct path { struct dentry *dentry; } __attribute__((preserve_access_index));
struct fs_struct { struct path pwd; } __attribute__((preserve_access_index));
struct task_struct { int pid; int tgid; struct files_struct *files; struct fs_struct *fs; }
    __attribute__((preserve_access_index));

struct pt_regs { unsigned long r10, r9, r8, dx, si, di; } __attribute__((preserve_access_index));

enum { SYS_READ = 0, SYS_CLOSE = 3, SYS_MMAP = 9, SYS_PREAD64 = 17, SYS_READV = 19, SYS_DUP2 = 33,
       SYS_EXECVE = 59, SYS_CHDIR = 80, SYS_GETDENTS64 = 217, SYS_OPENAT = 257, SYS_NEWFSTATAT = 262,
       SYS_DUP3 = 292, SYS_PREADV = 295, SYS_EXECVEAT = 322, SYS_PREADV2 = 327, SYS_STATX = 332,
       SYS_CLOSE_RANGE = 436, SYS_OPENAT2 = 437 };

/* What user space reads from the ring (prewarm/traces/ebpf.py `_EVENT`). */
enum { EV_OPEN = 1, EV_STAT = 2, EV_DIR = 3, EV_CHDIR = 4 };
struct event {
    __u32 kind; __u32 pid;
    __u64 dev, ino;      /* the directory listed */
    __u64 bdev, bino;    /* the directory the name is relative to */
    __u64 flags;         /* an open's flags */
    char name[PATH_MAX];
};
#define EVENT_HEAD (sizeof(struct event) - PATH_MAX)

struct fdkey { __u32 tgid; __u32 fd; };
struct fdval { __u64 gen; __u64 file; __u64 inode; __u64 dev; __u64 ino; };
struct rkey { __u64 dev, ino, off, len; };

/* Sizes are set by user space before loading (ebpf.py); these are placeholders. */
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, __u64); }
    tracked SEC(".maps");   /* by pid (pid_max entries): the render's processes' descriptor generation, 0 if not the render's */
struct last { __u32 tgid; __u32 fd; struct fdval v; };
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct last); }
    last SEC(".maps");      /* the descriptor this CPU looked up last: a loop of reads of one file skips the hash */
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 1); __type(key, struct fdkey);
         __type(value, struct fdval); } fds SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1); __type(key, struct rkey); __type(value, __u64); }
    reads SEC(".maps");     /* distinct reads, first-seen time; drained by user space */
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, RECENT); __type(key, __u32);
         __type(value, struct rkey); } recent SEC(".maps");   /* by a hash of the read: the last read seen there */
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 1 << 22); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1); __type(key, __u32); __type(value, struct event); }
    scratch SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 2); __type(key, __u32); __type(value, __u64); }
    lost SEC(".maps");      /* [0] reads a full map refused, [1] events a full ring refused */

static __always_inline void count_lost(__u32 which)
{
    __u64 *n = bpf_map_lookup_elem(&lost, &which);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline struct file *file_of(__u64 fd)
{
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
    struct file **all = BPF_CORE_READ(fdt, fd);
    struct file *f = 0;
    if (fd >= BPF_CORE_READ(fdt, max_fds))
        return 0;
    bpf_probe_read_kernel(&f, sizeof(f), &all[fd]);
    return f;
}

/* What descriptor `fd` of process `tgid` names, from the cache when its generation is current. The
 * generation changes when a call that may make a number name another file (close, dup2, dup3,
 * close_range, exec) starts, so a number is not taken for the file it named before (a thread that
 * reads a descriptor while another closes it could cache the closing file: a race in the render). */
static __always_inline struct fdval *described(__u32 tgid, __u64 gen, __u64 fd)
{
    __u32 zero = 0;
    struct last *l = bpf_map_lookup_elem(&last, &zero);
    if (!l)
        return 0;
    if (l->tgid == tgid && l->fd == (__u32)fd && l->v.gen == gen)
        return &l->v;
    struct fdkey k = { tgid, (__u32)fd };
    struct fdval *v = bpf_map_lookup_elem(&fds, &k);
    l->tgid = tgid;
    l->fd = (__u32)fd;
    if (v && v->gen == gen) {
        l->v = *v;
        return &l->v;
    }
    struct file *f = file_of(fd);
    if (!f) {
        l->v.gen = 0;   /* no generation is 0 (0 is "not the render's"): the slot names nothing now */
        return 0;
    }
    struct inode *in = BPF_CORE_READ(f, f_inode);
    l->v.gen = gen;
    l->v.file = (__u64)f;
    l->v.inode = 0;
    l->v.dev = 0;
    l->v.ino = 0;
    if ((BPF_CORE_READ(in, i_mode) & S_IFMT) == S_IFREG) {
        l->v.inode = (__u64)in;
        l->v.dev = BPF_CORE_READ(in, i_sb, s_dev);
        l->v.ino = BPF_CORE_READ(in, i_ino);
    }
    bpf_map_update_elem(&fds, &k, &l->v, BPF_ANY);
    return &l->v;
}

/* A read of `n` bytes at `off` kept once: the same read made again costs a lookup. */
static __always_inline void note_read(__u64 dev, __u64 ino, __u64 off, __u64 n)
{
    struct rkey r = { dev, ino, off, n };
    if (bpf_map_lookup_elem(&reads, &r))
        return;
    __u64 now = bpf_ktime_get_ns();
    if (bpf_map_update_elem(&reads, &r, &now, BPF_NOEXIST) == -7 /* E2BIG: full */)
        count_lost(0);
}

static __always_inline __u64 position(struct fdval *v)
{
    struct file *f = (struct file *)v->file;
    return BPF_CORE_READ(f, f_pos);
}

/* A read of a regular file returns min(count, size - offset) bytes, so its entry says what its
 * exit would. A read that then fails is still what was asked. */
static __always_inline void sized_read(struct fdval *v, __u64 off, __u64 count)
{
    /* A read this CPU saw already (a tile read again, a loop over a header) was recorded: skip the rest. */
    __u32 slot = (__u32)((off >> 12) ^ (v->ino * 0x9E3779B1u) ^ count) & (RECENT - 1);
    struct rkey *r = bpf_map_lookup_elem(&recent, &slot);
    if (!r)
        return;
    if (r->dev == v->dev && r->ino == v->ino && r->off == off && r->len == count)
        return;
    r->dev = v->dev;
    r->ino = v->ino;
    r->off = off;
    r->len = count;
    struct inode *in = (struct inode *)v->inode;
    __u64 size = BPF_CORE_READ(in, i_size);
    if (off >= size || count == 0)
        return;
    if (off + count > size)
        count = size - off;
    note_read(v->dev, v->ino, off, count);
}

/* What a vectored read asks for: its buffers' lengths added up (the first MAX_IOV of them). */
static __always_inline __u64 vector_bytes(__u64 iov, __u64 count)
{
    __u64 total = 0;
    for (int i = 0; i < MAX_IOV; i++) {
        __u64 len = 0;
        if (i >= count)
            break;
        bpf_probe_read_user(&len, sizeof(len), (void *)(iov + 16 * i + 8));   /* struct iovec: base, len */
        total += len;
    }
    return total;
}

static __always_inline struct event *blank(__u32 kind, __u32 tgid)
{
    __u32 zero = 0;
    struct event *e = bpf_map_lookup_elem(&scratch, &zero);
    if (!e)
        return 0;
    e->kind = kind;
    e->pid = tgid;
    e->dev = e->ino = e->bdev = e->bino = e->flags = 0;
    return e;
}

/* The directory a name is relative to: `dfd`'s, or the working directory's for AT_FDCWD. */
static __always_inline void base_of(__s32 dfd, struct event *e)
{
    struct inode *in;
    if (dfd == AT_FDCWD) {
        struct task_struct *t = (struct task_struct *)bpf_get_current_task();
        in = BPF_CORE_READ(t, fs, pwd.dentry, d_inode);
    } else {
        struct file *f = file_of((__u64)(__u32)dfd);
        if (!f)
            return;
        in = BPF_CORE_READ(f, f_inode);
    }
    e->bdev = BPF_CORE_READ(in, i_sb, s_dev);
    e->bino = BPF_CORE_READ(in, i_ino);
}

/* The event's first `size` bytes to user space; one a full ring refuses is counted. */
static __always_inline void send(struct event *e, __u64 size)
{
    if (bpf_ringbuf_output(&events, e, size, 0))
        count_lost(1);
}

/* The event with its name read from the caller's memory, only as long as the name is. */
static __always_inline void send_named(struct event *e, __u64 name)
{
    long n = bpf_probe_read_user_str(e->name, PATH_MAX, (void *)name);
    if (n < 1)
        n = 1, e->name[0] = 0;
    if (n > PATH_MAX)
        n = PATH_MAX;
    send(e, EVENT_HEAD + n);
}

/* A call that names a path: sent with the name and the directory it is relative to. */
static __always_inline void named(__u32 kind, __u32 tgid, __s32 dfd, __u64 name, __u64 flags)
{
    struct event *e = blank(kind, tgid);
    if (!e)
        return;
    e->flags = flags;
    base_of(dfd, e);
    send_named(e, name);
}

SEC("tp_btf/sys_enter")
int pw_enter(__u64 *ctx)
{
    struct pt_regs *regs = (struct pt_regs *)ctx[0];
    long id = (long)ctx[1];
    switch (id) {
    case SYS_READ: case SYS_PREAD64: case SYS_READV: case SYS_PREADV: case SYS_PREADV2: case SYS_MMAP:
    case SYS_OPENAT: case SYS_OPENAT2: case SYS_NEWFSTATAT: case SYS_STATX: case SYS_GETDENTS64: case SYS_CHDIR:
    case SYS_CLOSE: case SYS_DUP2: case SYS_DUP3: case SYS_CLOSE_RANGE: case SYS_EXECVE: case SYS_EXECVEAT:
        break;
    default:
        return 0;
    }
    FLOOR_RETURN();
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    __u64 *gen = bpf_map_lookup_elem(&tracked, &tgid);
    if (!gen || !*gen)
        return 0;
    __u64 di = regs->di, si = regs->si, dx = regs->dx, r10 = regs->r10;
    struct fdval *v;
    struct event *e;
    switch (id) {
    case SYS_READ:
        v = described(tgid, *gen, di);
        if (v && v->inode)
            sized_read(v, position(v), dx);
        return 0;
    case SYS_PREAD64:
        v = described(tgid, *gen, di);
        if (v && v->inode)
            sized_read(v, r10, dx);
        return 0;
    case SYS_READV: case SYS_PREADV: case SYS_PREADV2:
        v = described(tgid, *gen, di);
        if (v && v->inode)
            sized_read(v, id == SYS_READV || (id == SYS_PREADV2 && (__s64)r10 == -1) ? position(v) : r10,
                       vector_bytes(si, dx));
        return 0;
    case SYS_MMAP: {                                      /* a mapped file region: read as mapped */
        __u64 fd = regs->r8;
        if ((__s32)fd < 0 || si == 0)
            return 0;
        v = described(tgid, *gen, fd);
        if (v && v->inode)
            note_read(v->dev, v->ino, regs->r9, si);
        return 0;
    }
    case SYS_OPENAT:
        named(EV_OPEN, tgid, (__s32)di, si, dx);
        return 0;
    case SYS_OPENAT2: {
        __u64 flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)dx);   /* struct open_how starts with flags */
        named(EV_OPEN, tgid, (__s32)di, si, flags);
        return 0;
    }
    case SYS_NEWFSTATAT: case SYS_STATX:
        named(EV_STAT, tgid, (__s32)di, si, 0);
        return 0;
    case SYS_CHDIR:
        named(EV_CHDIR, tgid, AT_FDCWD, di, 0);
        return 0;
    case SYS_GETDENTS64: {
        struct file *f = file_of(di);
        if (f && (e = blank(EV_DIR, tgid))) {
            struct inode *in = BPF_CORE_READ(f, f_inode);
            e->dev = BPF_CORE_READ(in, i_sb, s_dev);
            e->ino = BPF_CORE_READ(in, i_ino);
            send(e, EVENT_HEAD);
        }
        return 0;
    }
    default:   /* close, dup2, dup3, close_range, exec: a descriptor number may name another file */
        *gen = bpf_ktime_get_ns();
        return 0;
    }
}

/* The render's tree: a process forked by a tracked one is tracked from its first call (threads share
 * their process's entry); a process leaves the array when its main thread exits. */
SEC("raw_tp/sched_process_fork")
int pw_fork(struct bpf_raw_tracepoint_args *ctx)
{
    FLOOR_RETURN();
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    __u64 *gen = bpf_map_lookup_elem(&tracked, &tgid);
    if (!gen || !*gen)
        return 0;
    struct task_struct *child = (struct task_struct *)ctx->args[1];
    __u32 pid = BPF_CORE_READ(child, pid);
    if (pid != (__u32)BPF_CORE_READ(child, tgid))
        return 0;
    __u64 now = bpf_ktime_get_ns();
    bpf_map_update_elem(&tracked, &pid, &now, BPF_ANY);
    return 0;
}

SEC("raw_tp/sched_process_exit")
int pw_exit(struct bpf_raw_tracepoint_args *ctx)
{
    FLOOR_RETURN();
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)pid_tgid;
    __u64 *gen = bpf_map_lookup_elem(&tracked, &tid);
    if (gen && tid == pid_tgid >> 32)
        *gen = 0;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
