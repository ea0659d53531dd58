// What a random cache line costs on this machine, for reading the bed's figures:
// the connection table is random lines over a few MB (64K flows) to a few hundred
// MB (1M flows), read a batch ahead (independent) or not (dependent).
//
//   cc -O2 -o /tmp/memprobe perf/memprobe.c
//   taskset -c 1 /tmp/memprobe lines 65536 64      # 64K lines packed in 4 MB
//   taskset -c 1 /tmp/memprobe lines 65536 4096    # the same lines, one per 4 KB page
//   taskset -c 1 /tmp/memprobe pairs 12            # two lines an item, 12 MB region
//
// `lines N STRIDE`: N lines STRIDE bytes apart, read in a random cycle (dependent:
// each read gives the next address) and in random order with a prefetch 16 reads
// ahead (independent). `pairs MB`: an item is two random lines, two lines of one
// 4 KB page, two adjacent lines, or one line, read independently as above.
// Add `small` to use 4 KB pages instead of 2 MB huge pages (needs free hugepages).
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define READS 20000000ul
#define AHEAD 16

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char *region(size_t bytes, int huge) {
    char *m = mmap(0, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap (huge pages free? try `small`)");
        exit(1);
    }
    memset(m, 1, bytes);
    return m;
}

static void lines(size_t n, size_t stride, int huge) {
    char *m = region(n * stride, huge);
    size_t *order = malloc(n * sizeof *order);
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = next_random() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        *(size_t *)(m + order[i] * stride) = order[(i + 1) % n] * stride;
    size_t at = 0;
    double t0 = seconds();
    for (size_t i = 0; i < READS; i++) at = *(size_t *)(m + at);
    double dependent = (seconds() - t0) / READS * 1e9;
    size_t *addr = malloc(READS * sizeof *addr), sum = 0;
    for (size_t i = 0; i < READS; i++) addr[i] = next_random() % n * stride;
    t0 = seconds();
    for (size_t i = 0; i < READS; i++) {
        if (i + AHEAD < READS) __builtin_prefetch(m + addr[i + AHEAD]);
        sum += *(size_t *)(m + addr[i]);
    }
    double independent = (seconds() - t0) / READS * 1e9;
    printf("%zu lines %zu bytes apart (%zu MB): dependent %.1f ns, independent %.1f ns [%zu]\n",
           n, stride, n * stride >> 20, dependent, independent, at + sum);
}

static void pairs(size_t mb, int huge) {
    static const char *names[] = {"two random lines", "two lines of one 4 KB page",
                                  "two adjacent lines", "one random line"};
    size_t bytes = mb << 20, n = bytes / 64;
    char *m = region(bytes, huge);
    size_t *a = malloc(READS * sizeof *a), *b = malloc(READS * sizeof *b);
    for (int kind = 0; kind < 4; kind++) {
        for (size_t i = 0; i < READS; i++) {
            size_t line = next_random() % n;
            a[i] = line * 64;
            switch (kind) {
            case 0: b[i] = next_random() % n * 64; break;
            case 1: b[i] = ((line & ~63ul) | ((line + 1 + next_random() % 63) & 63)) * 64; break;
            case 2: b[i] = (line ^ 1) * 64; break;
            default: b[i] = a[i];
            }
        }
        size_t sum = 0;
        double t0 = seconds();
        for (size_t i = 0; i < READS; i++) {
            if (i + AHEAD < READS) {
                __builtin_prefetch(m + a[i + AHEAD]);
                if (kind != 3) __builtin_prefetch(m + b[i + AHEAD]);
            }
            sum += *(size_t *)(m + a[i]);
            if (kind != 3) sum += *(size_t *)(m + b[i]);
        }
        printf("%zu MB, %s: %.1f ns an item [%zu]\n", mb, names[kind],
               (seconds() - t0) / READS * 1e9, sum);
    }
}

int main(int argc, char **argv) {
    int huge = strcmp(argv[argc - 1], "small") != 0;
    if (argc >= 4 && strcmp(argv[1], "lines") == 0) {
        lines(strtoul(argv[2], 0, 10), strtoul(argv[3], 0, 10), huge);
    } else if (argc >= 3 && strcmp(argv[1], "pairs") == 0) {
        pairs(strtoul(argv[2], 0, 10), huge);
    } else {
        fprintf(stderr, "usage: %s lines N STRIDE [small] | pairs MB [small]\n", argv[0]);
        return 2;
    }
    return 0;
}
