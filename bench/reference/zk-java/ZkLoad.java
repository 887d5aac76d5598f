// ZooKeeper load with the Java ZooKeeper client (org.apache.zookeeper.ZooKeeper, async API):
// the reference client for `kiln bench compare`'s ZooKeeper workloads.
//
// N sessions, each keeping `--in-flight` requests outstanding (closed loop: a completion
// issues the next request); operations drawn from `--mix` (get, set, create, delete) over
// `--keys` pool nodes with `--value-size`-byte values. Latency is measured from each request's
// send to its callback. After `--warmup` seconds the next `--duration` seconds are measured.
// `--server-pid <pid>` names the server's process on this machine (the harness passes the one
// it started); without it the process listening on --server's port is found through /proc.
// The last line is the result the harness parses:
//   RESULT ops=<n> seconds=<s> ops_per_sec=<x> errors=<e> mean_us=.. p50_us=.. p90_us=..
//          p99_us=.. p999_us=.. p9999_us=.. max_us=.. client_cpu_us_per_op=..
//          server_cpu_us_per_op_window=.. (the server's CPU over the measured window; -1: unknown)
//
// Build: javac -cp /usr/share/java/zookeeper.jar -d <dir> ZkLoad.java
// Run:   java -cp <dir>:/usr/share/java/zookeeper.jar ZkLoad --server 127.0.0.1:2181 ...

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.zookeeper.AsyncCallback;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

public final class ZkLoad {
    static String server = "127.0.0.1:2181";
    static int sessions = 16;
    static int inFlight = 32;
    static int valueSize = 100;
    static int keys = 1000;
    static double warmupS = 0;
    static double durationS = 10;
    static String root = "/kiln-bench-java";
    // The server's pid on this machine (--server-pid); -1: find the process listening on
    // --server's port.
    static long givenServerPid = -1;
    // Cumulative weights of get, set, create, delete.
    static int[] weights = {100, 0, 0, 0};

    static volatile boolean stop = false;
    static long measureFrom;
    static long measureTo;
    static final AtomicLong errors = new AtomicLong();

    public static void main(String[] args) throws Exception {
        for (int i = 0; i + 1 < args.length; i += 2) {
            String v = args[i + 1];
            switch (args[i]) {
                case "--server": server = v; break;
                case "--sessions": sessions = Integer.parseInt(v); break;
                case "--in-flight": inFlight = Integer.parseInt(v); break;
                case "--value-size": valueSize = Integer.parseInt(v); break;
                case "--keys": keys = Integer.parseInt(v); break;
                case "--warmup": warmupS = Double.parseDouble(v); break;
                case "--duration": durationS = Double.parseDouble(v); break;
                case "--root": root = v; break;
                case "--server-pid": givenServerPid = Long.parseLong(v); break;
                case "--mix": weights = parseMix(v); break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        // Checked before anything is created, so a wrong --server-pid fails the run at once.
        if (givenServerPid != -1 && ServerCpu.seconds(givenServerPid) < 0) {
            throw new IllegalArgumentException(
                "--server-pid " + givenServerPid + ": cannot read /proc/" + givenServerPid + "/stat");
        }
        byte[] value = new byte[valueSize];
        Arrays.fill(value, (byte) 'x');

        ZooKeeper setup = connect();
        try {
            setup.create(root, new byte[0], ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
        } catch (KeeperException.NodeExistsException e) {
            // left over from an earlier run
        }
        // Pool nodes, pipelined.
        CountDownLatch made = new CountDownLatch(keys);
        for (int k = 0; k < keys; k++) {
            setup.create(root + "/p" + k, value, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT,
                (rc, path, ctx, name) -> made.countDown(), null);
        }
        if (!made.await(60, TimeUnit.SECONDS)) {
            throw new IllegalStateException("creating pool nodes timed out");
        }

        List<Worker> workers = new ArrayList<>();
        for (int s = 0; s < sessions; s++) {
            workers.add(new Worker(s, connect(), value));
        }
        long start = System.nanoTime();
        measureFrom = start + (long) (warmupS * 1e9);
        measureTo = measureFrom + (long) (durationS * 1e9);
        for (Worker w : workers) {
            w.begin();
        }
        while (System.nanoTime() < measureFrom) {
            Thread.sleep(Math.max(1, (measureFrom - System.nanoTime()) / 1_000_000));
        }
        Usage before = Usage.now();
        long serverPid = givenServerPid != -1 ? givenServerPid : ServerCpu.listenerPid(server);
        double serverCpu0 = ServerCpu.seconds(serverPid);
        while (System.nanoTime() < measureTo) {
            Thread.sleep(Math.max(1, (measureTo - System.nanoTime()) / 1_000_000));
        }
        Usage used = Usage.now().minus(before);
        double serverCpu1 = ServerCpu.seconds(serverPid);
        // -1 in the result when either reading failed (e.g. the server exited).
        double serverCpuWindow = serverCpu0 < 0 || serverCpu1 < 0 ? -1 : serverCpu1 - serverCpu0;
        stop = true;
        long drainBy = System.nanoTime() + 10_000_000_000L;
        for (Worker w : workers) {
            while (w.outstanding.get() > 0 && System.nanoTime() < drainBy) {
                Thread.sleep(5);
            }
        }
        long n = 0;
        int total = 0;
        for (Worker w : workers) {
            synchronized (w) {
                total += w.count;
            }
        }
        long[] all = new long[total];
        int at = 0;
        for (Worker w : workers) {
            synchronized (w) {
                System.arraycopy(w.samples, 0, all, at, w.count);
                at += w.count;
            }
        }
        n = all.length;
        Arrays.sort(all);
        double sum = 0;
        for (long v : all) {
            sum += v;
        }
        double seconds = durationS;
        System.out.println(used.describe(n));
        System.out.printf(
            "RESULT ops=%d seconds=%.3f ops_per_sec=%.1f errors=%d mean_us=%.1f p50_us=%.1f p90_us=%.1f"
                + " p99_us=%.1f p999_us=%.1f p9999_us=%.1f max_us=%.1f client_cpu_us_per_op=%.2f"
                + " server_cpu_us_per_op_window=%.2f%n",
            n, seconds, n / seconds, errors.get(), n == 0 ? 0.0 : sum / n / 1e3, pct(all, 0.50),
            pct(all, 0.90), pct(all, 0.99), pct(all, 0.999), pct(all, 0.9999),
            n == 0 ? 0.0 : all[all.length - 1] / 1e3, n == 0 ? 0.0 : used.cpuNs / 1e3 / n,
            serverCpuWindow < 0 || n == 0 ? -1.0 : serverCpuWindow * 1e6 / n);
        for (Worker w : workers) {
            w.cleanup();
            w.zk.close();
        }
        try {
            CountDownLatch gone = new CountDownLatch(keys);
            for (int k = 0; k < keys; k++) {
                setup.delete(root + "/p" + k, -1, (rc, path, ctx) -> gone.countDown(), null);
            }
            gone.await(60, TimeUnit.SECONDS);
            setup.delete(root, -1);
        } catch (KeeperException e) {
            System.err.println("cleanup: " + e);
        }
        setup.close();
    }

    /**
     * The server's CPU over the measured window only (a server on this machine: the process
     * --server-pid names, which the harness passes, or else the one listening on the server's
     * port, found through /proc): the harness charges a run with all the server's CPU from the
     * client's start to its end, set-up, warm-up and a JVM server's JIT compilation included.
     */
    static final class ServerCpu {
        static long listenerPid(String hostPort) {
            try {
                int port = Integer.parseInt(hostPort.substring(hostPort.lastIndexOf(':') + 1));
                List<String> inodes = new ArrayList<>();
                for (String table : new String[] {"/proc/net/tcp", "/proc/net/tcp6"}) {
                    java.nio.file.Path t = java.nio.file.Paths.get(table);
                    if (!java.nio.file.Files.exists(t)) {
                        continue;
                    }
                    List<String> lines = java.nio.file.Files.readAllLines(t);
                    for (String line : lines.subList(1, lines.size())) {
                        String[] f = line.trim().split("\\s+");
                        if (f.length < 10) {
                            continue;
                        }
                        String local = f[1];
                        int p = Integer.parseInt(local.substring(local.lastIndexOf(':') + 1), 16);
                        if (p == port && f[3].equals("0A") && !f[9].equals("0")) {
                            inodes.add("socket:[" + f[9] + "]");
                        }
                    }
                }
                if (inodes.isEmpty()) {
                    return -1;
                }
                try (java.nio.file.DirectoryStream<java.nio.file.Path> procs =
                        java.nio.file.Files.newDirectoryStream(java.nio.file.Paths.get("/proc"))) {
                    for (java.nio.file.Path proc : procs) {
                        String name = proc.getFileName().toString();
                        if (!name.chars().allMatch(Character::isDigit)) {
                            continue;
                        }
                        try (java.nio.file.DirectoryStream<java.nio.file.Path> fds =
                                java.nio.file.Files.newDirectoryStream(proc.resolve("fd"))) {
                            for (java.nio.file.Path fd : fds) {
                                try {
                                    String target =
                                        java.nio.file.Files.readSymbolicLink(fd).toString();
                                    if (inodes.contains(target)) {
                                        return Long.parseLong(name);
                                    }
                                } catch (java.io.IOException e) {
                                    // fd closed meanwhile
                                }
                            }
                        } catch (java.io.IOException | SecurityException e) {
                            // not ours to look at
                        }
                    }
                }
            } catch (Exception e) {
                return -1;
            }
            return -1;
        }

        /** User + system CPU seconds of pid (-1 when unknown). */
        static double seconds(long pid) {
            if (pid <= 0) {
                return -1;
            }
            try {
                String stat = new String(java.nio.file.Files.readAllBytes(
                    java.nio.file.Paths.get("/proc/" + pid + "/stat")));
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                return (Long.parseLong(f[11]) + Long.parseLong(f[12])) / 100.0;
            } catch (Exception e) {
                return -1;
            }
        }
    }

    /** The client's own CPU and GC use (to tell its costs from the server's). */
    static final class Usage {
        long cpuNs;
        long gcCount;
        long gcMs;
        // CPU by thread kind: the ZooKeeper client's I/O threads, its event (callback) threads, rest.
        long sendNs;
        long eventNs;

        static Usage now() {
            Usage u = new Usage();
            java.lang.management.OperatingSystemMXBean os =
                java.lang.management.ManagementFactory.getOperatingSystemMXBean();
            if (os instanceof com.sun.management.OperatingSystemMXBean) {
                u.cpuNs = ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime();
            }
            for (java.lang.management.GarbageCollectorMXBean gc
                    : java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()) {
                u.gcCount += Math.max(0, gc.getCollectionCount());
                u.gcMs += Math.max(0, gc.getCollectionTime());
            }
            java.lang.management.ThreadMXBean tm =
                java.lang.management.ManagementFactory.getThreadMXBean();
            for (Thread t : Thread.getAllStackTraces().keySet()) {
                long ns = tm.getThreadCpuTime(t.getId());
                if (ns <= 0) {
                    continue;
                }
                if (t.getName().endsWith("-SendThread(" + server + ")")
                        || t.getName().contains("SendThread")) {
                    u.sendNs += ns;
                } else if (t.getName().contains("EventThread")) {
                    u.eventNs += ns;
                }
            }
            return u;
        }

        Usage minus(Usage o) {
            Usage u = new Usage();
            u.cpuNs = cpuNs - o.cpuNs;
            u.gcCount = gcCount - o.gcCount;
            u.gcMs = gcMs - o.gcMs;
            u.sendNs = sendNs - o.sendNs;
            u.eventNs = eventNs - o.eventNs;
            return u;
        }

        String describe(long ops) {
            double per = Math.max(1, ops) * 1e3;
            return String.format(
                "CLIENT cpu_s=%.2f cpu_us_per_op=%.2f send_threads_us_per_op=%.2f"
                    + " event_threads_us_per_op=%.2f gc_count=%d gc_ms=%d",
                cpuNs / 1e9, cpuNs / per, sendNs / per, eventNs / per, gcCount, gcMs);
        }
    }

    static double pct(long[] sorted, double q) {
        if (sorted.length == 0) {
            return 0;
        }
        int i = (int) Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1);
        return sorted[Math.max(0, i)] / 1e3;
    }

    static int[] parseMix(String s) {
        int[] w = new int[4];
        for (String part : s.split(",")) {
            String[] kv = part.split("=");
            int v = Integer.parseInt(kv[1].trim());
            switch (kv[0].trim()) {
                case "get": w[0] += v; break;
                case "set": w[1] += v; break;
                case "create": w[2] += v; break;
                case "delete": w[3] += v; break;
                default: throw new IllegalArgumentException("op " + kv[0] + " is not supported");
            }
        }
        for (int i = 1; i < 4; i++) {
            w[i] += w[i - 1];
        }
        if (w[3] <= 0) {
            throw new IllegalArgumentException("empty mix");
        }
        return w;
    }

    static ZooKeeper connect() throws Exception {
        CountDownLatch up = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(server, 30000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                up.countDown();
            }
        });
        if (!up.await(30, TimeUnit.SECONDS)) {
            throw new IllegalStateException("no session with " + server);
        }
        return zk;
    }

    /** One session; callbacks run on its event thread, so its state needs no locks. */
    static final class Worker implements AsyncCallback.DataCallback, AsyncCallback.StatCallback,
            AsyncCallback.StringCallback, AsyncCallback.VoidCallback {
        final int id;
        final ZooKeeper zk;
        final byte[] value;
        final SplittableRandom rng;
        final ArrayDeque<String> created = new ArrayDeque<>();
        final AtomicLong outstanding = new AtomicLong();
        long made = 0;
        long[] samples = new long[1 << 16];
        int count = 0;

        Worker(int id, ZooKeeper zk, byte[] value) {
            this.id = id;
            this.zk = zk;
            this.value = value;
            this.rng = new SplittableRandom(0x9E3779B97F4A7C15L * (id + 1));
        }

        void begin() {
            for (int i = 0; i < inFlight; i++) {
                next();
            }
        }

        synchronized void next() {
            if (stop) {
                return;
            }
            outstanding.incrementAndGet();
            int r = rng.nextInt(weights[3]);
            Long t0 = System.nanoTime();
            String pool = root + "/p" + rng.nextInt(keys);
            if (r < weights[0]) {
                zk.getData(pool, false, (AsyncCallback.DataCallback) this, t0);
            } else if (r < weights[1]) {
                zk.setData(pool, value, -1, (AsyncCallback.StatCallback) this, t0);
            } else if (r < weights[2] || created.isEmpty()) {
                String path = root + "/s" + id + "-" + (made++);
                created.add(path);
                zk.create(path, value, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT,
                    (AsyncCallback.StringCallback) this, t0);
            } else {
                zk.delete(created.poll(), -1, (AsyncCallback.VoidCallback) this, t0);
            }
        }

        synchronized void done(int rc, Object ctx) {
            long now = System.nanoTime();
            long t0 = (Long) ctx;
            if (rc != 0) {
                errors.incrementAndGet();
            }
            if (t0 >= measureFrom && now <= measureTo) {
                if (count == samples.length) {
                    samples = Arrays.copyOf(samples, samples.length * 2);
                }
                samples[count++] = now - t0;
            }
            outstanding.decrementAndGet();
            next();
        }

        @Override
        public void processResult(int rc, String path, Object ctx, byte[] data,
                org.apache.zookeeper.data.Stat stat) {
            done(rc, ctx);
        }

        @Override
        public void processResult(int rc, String path, Object ctx,
                org.apache.zookeeper.data.Stat stat) {
            done(rc, ctx);
        }

        @Override
        public void processResult(int rc, String path, Object ctx, String name) {
            done(rc, ctx);
        }

        @Override
        public void processResult(int rc, String path, Object ctx) {
            done(rc, ctx);
        }

        void cleanup() throws InterruptedException {
            List<String> left;
            synchronized (this) {
                left = new ArrayList<>(created);
                created.clear();
            }
            CountDownLatch gone = new CountDownLatch(left.size());
            for (String p : left) {
                zk.delete(p, -1, (rc, path, ctx) -> gone.countDown(), null);
            }
            gone.await(60, TimeUnit.SECONDS);
        }
    }
}
