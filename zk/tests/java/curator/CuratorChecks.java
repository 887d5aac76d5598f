import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.CreateMode;

/**
 * Curator recipe checks run against a ZooKeeper-compatible server.
 * Usage: CuratorChecks CONNECT_STRING (mutex|leader|barrier|cache).
 * Prints one line per observation and "RESULT ok <check>" or "RESULT fail <check>: why"; exit 0 only on ok.
 */
public final class CuratorChecks {
    private static String connect;

    private CuratorChecks() {}

    static CuratorFramework client() throws Exception {
        CuratorFramework c = CuratorFrameworkFactory.newClient(connect, 10000, 5000, new ExponentialBackoffRetry(100, 5));
        c.start();
        if (!c.blockUntilConnected(15, TimeUnit.SECONDS)) {
            throw new IllegalStateException("client did not connect to " + connect);
        }
        return c;
    }

    static void fail(String check, String why) {
        System.out.println("RESULT fail " + check + ": " + why);
        System.out.flush();
        Runtime.getRuntime().halt(1);
    }

    public static void main(String[] args) throws Exception {
        connect = args[0];
        String check = args[1];
        switch (check) {
            case "mutex": mutex(); break;
            case "leader": leader(); break;
            case "barrier": barrier(); break;
            case "cache": cache(); break;
            default: fail(check, "unknown check");
        }
        System.out.println("RESULT ok " + check);
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    /** Six sessions contend for one InterProcessMutex; at no time may two hold it. */
    static void mutex() throws Exception {
        final int sessions = 6;
        final int rounds = 15;
        final AtomicInteger holders = new AtomicInteger();
        final AtomicInteger maxHolders = new AtomicInteger();
        final AtomicInteger acquired = new AtomicInteger();
        final AtomicReference<Throwable> error = new AtomicReference<>();
        List<CuratorFramework> clients = new ArrayList<>();
        for (int i = 0; i < sessions; i++) {
            clients.add(client());
        }
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < sessions; i++) {
            final CuratorFramework c = clients.get(i);
            Thread t = new Thread(() -> {
                try {
                    InterProcessMutex m = new InterProcessMutex(c, "/curator-checks/mutex");
                    for (int r = 0; r < rounds; r++) {
                        if (!m.acquire(60, TimeUnit.SECONDS)) {
                            throw new IllegalStateException("acquire timed out");
                        }
                        int h = holders.incrementAndGet();
                        maxHolders.accumulateAndGet(h, Math::max);
                        // Also check through the server: the holder's node must be the lowest child.
                        List<String> kids = c.getChildren().forPath("/curator-checks/mutex");
                        if (kids.isEmpty()) {
                            throw new IllegalStateException("holder sees no lock nodes");
                        }
                        Thread.sleep(5);
                        acquired.incrementAndGet();
                        holders.decrementAndGet();
                        m.release();
                    }
                } catch (Throwable e) {
                    error.compareAndSet(null, e);
                }
            });
            threads.add(t);
            t.start();
        }
        for (Thread t : threads) {
            t.join(180_000);
        }
        if (error.get() != null) {
            fail("mutex", "worker error: " + error.get());
        }
        System.out.println("mutex acquisitions=" + acquired.get() + " max_holders=" + maxHolders.get());
        if (maxHolders.get() != 1) {
            fail("mutex", "two holders at once (max " + maxHolders.get() + ")");
        }
        if (acquired.get() != sessions * rounds) {
            fail("mutex", "acquisitions " + acquired.get() + " != " + sessions * rounds);
        }
        List<String> left = clients.get(0).getChildren().forPath("/curator-checks/mutex");
        if (!left.isEmpty()) {
            fail("mutex", "lock nodes left after all releases: " + left);
        }
        for (CuratorFramework c : clients) {
            c.close();
        }
    }

    static int leaders(List<LeaderLatch> latches) {
        int n = 0;
        for (LeaderLatch l : latches) {
            if (l.getState() == LeaderLatch.State.STARTED && l.hasLeadership()) {
                n++;
            }
        }
        return n;
    }

    /** Waits until exactly one of the latches leads, then checks it stays that way for a while. */
    static LeaderLatch awaitSingleLeader(List<LeaderLatch> latches) throws Exception {
        long deadline = System.currentTimeMillis() + 30_000;
        while (System.currentTimeMillis() < deadline) {
            int n = leaders(latches);
            if (n > 1) {
                fail("leader", n + " leaders at once");
            }
            if (n == 1) {
                for (int i = 0; i < 20; i++) {
                    Thread.sleep(50);
                    if (leaders(latches) != 1) {
                        fail("leader", "leadership not stable: " + leaders(latches) + " leaders");
                    }
                }
                for (LeaderLatch l : latches) {
                    if (l.hasLeadership()) {
                        // Every participant must agree on who leads.
                        for (LeaderLatch o : latches) {
                            String seen = o.getLeader().getId();
                            if (!seen.equals(l.getId())) {
                                fail("leader", o.getId() + " thinks the leader is " + seen + ", not " + l.getId());
                            }
                        }
                        return l;
                    }
                }
            }
            Thread.sleep(20);
        }
        fail("leader", "no leader within 30 s");
        return null;
    }

    /** Four LeaderLatch participants: exactly one leader; when it leaves (closed, then session lost), another takes over. */
    static void leader() throws Exception {
        List<CuratorFramework> clients = new ArrayList<>();
        List<LeaderLatch> latches = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            CuratorFramework c = client();
            clients.add(c);
            LeaderLatch l = new LeaderLatch(c, "/curator-checks/leader", "p" + i);
            latches.add(l);
            l.start();
        }
        LeaderLatch first = awaitSingleLeader(latches);
        System.out.println("leader " + first.getId());
        // Fail-over 1: the leader closes its latch.
        first.close();
        latches.remove(first);
        LeaderLatch second = awaitSingleLeader(latches);
        System.out.println("leader after close " + second.getId());
        // Fail-over 2: the leader's whole client goes away (session closed, its ephemeral node deleted).
        int idx = latches.indexOf(second);
        CuratorFramework secondClient = null;
        for (CuratorFramework c : clients) {
            if (second.getId().equals("p" + clients.indexOf(c))) {
                secondClient = c;
            }
        }
        latches.remove(idx);
        secondClient.close();
        LeaderLatch third = awaitSingleLeader(latches);
        System.out.println("leader after session close " + third.getId());
        for (LeaderLatch l : latches) {
            l.close();
        }
        for (CuratorFramework c : clients) {
            c.close();
        }
    }

    /** DistributedDoubleBarrier of 5: nobody enters before the 5th arrives, nobody leaves before all leave. */
    static void barrier() throws Exception {
        final int members = 5;
        List<CuratorFramework> clients = new ArrayList<>();
        for (int i = 0; i < members; i++) {
            clients.add(client());
        }
        final AtomicInteger entered = new AtomicInteger();
        final AtomicInteger left = new AtomicInteger();
        final AtomicReference<Throwable> error = new AtomicReference<>();
        final CountDownLatch mayLeave = new CountDownLatch(1);
        final CountDownLatch lastMayLeave = new CountDownLatch(1);
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < members; i++) {
            final int me = i;
            final CuratorFramework c = clients.get(i);
            Thread t = new Thread(() -> {
                try {
                    DistributedDoubleBarrier b = new DistributedDoubleBarrier(c, "/curator-checks/barrier", members);
                    if (!b.enter(60, TimeUnit.SECONDS)) {
                        throw new IllegalStateException("enter timed out");
                    }
                    entered.incrementAndGet();
                    if (me == members - 1) {
                        lastMayLeave.await();
                    } else {
                        mayLeave.await();
                    }
                    if (!b.leave(60, TimeUnit.SECONDS)) {
                        throw new IllegalStateException("leave timed out");
                    }
                    left.incrementAndGet();
                } catch (Throwable e) {
                    error.compareAndSet(null, e);
                }
            });
            threads.add(t);
        }
        for (int i = 0; i < members - 1; i++) {
            threads.get(i).start();
        }
        Thread.sleep(2000);
        if (entered.get() != 0) {
            fail("barrier", entered.get() + " entered before the last member arrived");
        }
        System.out.println("barrier: 4 of 5 waiting, none entered");
        threads.get(members - 1).start();
        long deadline = System.currentTimeMillis() + 30_000;
        while (entered.get() < members && System.currentTimeMillis() < deadline) {
            Thread.sleep(20);
        }
        if (entered.get() != members) {
            fail("barrier", "only " + entered.get() + " entered after all arrived; error=" + error.get());
        }
        System.out.println("barrier: all entered");
        mayLeave.countDown();
        Thread.sleep(2000);
        if (left.get() != 0) {
            fail("barrier", left.get() + " left before the last member left");
        }
        System.out.println("barrier: 4 of 5 leaving, none left");
        lastMayLeave.countDown();
        for (Thread t : threads) {
            t.join(60_000);
        }
        if (error.get() != null) {
            fail("barrier", "member error: " + error.get());
        }
        if (left.get() != members) {
            fail("barrier", "only " + left.get() + " left");
        }
        System.out.println("barrier: all left");
        for (CuratorFramework c : clients) {
            c.close();
        }
    }

    /** CuratorCache (persistent recursive watch) must see every change, one by one, and end equal to the tree. */
    static void cache() throws Exception {
        CuratorFramework writer = client();
        CuratorFramework reader = client();
        final String root = "/curator-checks/cache";
        writer.create().creatingParentsIfNeeded().forPath(root, "root".getBytes());
        final LinkedBlockingQueue<String> events = new LinkedBlockingQueue<>();
        CuratorCache cache = CuratorCache.build(reader, root);
        CountDownLatch initialized = new CountDownLatch(1);
        cache.listenable().addListener(CuratorCacheListener.builder()
            .forCreates(n -> events.add("create " + n.getPath() + " " + new String(n.getData())))
            .forChanges((o, n) -> events.add("change " + n.getPath() + " " + new String(n.getData())))
            .forDeletes(o -> events.add("delete " + o.getPath()))
            .forInitialized(initialized::countDown)
            .build());
        cache.start();
        if (!initialized.await(20, TimeUnit.SECONDS)) {
            fail("cache", "cache did not initialize");
        }
        events.clear();
        int steps = 0;
        // Each step is one write; the cache must report exactly that change before the next write.
        String[][] script = {
            {"create", root + "/a", "1"},
            {"create", root + "/a/b", "2"},
            {"create", root + "/a/b/c", "3"},
            {"set", root + "/a", "1.1"},
            {"set", root + "/a/b/c", "3.1"},
            {"create", root + "/d", "4"},
            {"set", root + "/d", "4.1"},
            {"set", root + "/d", "4.2"},
            {"delete", root + "/a/b/c", ""},
            {"create", root + "/a/b/e", "5"},
            {"set", root, "root.1"},
            {"delete", root + "/d", ""},
            {"create", root + "/a/b/c", "6"},
        };
        for (String[] s : script) {
            String expect;
            switch (s[0]) {
                case "create":
                    writer.create().forPath(s[1], s[2].getBytes());
                    expect = "create " + s[1] + " " + s[2];
                    break;
                case "set":
                    writer.setData().forPath(s[1], s[2].getBytes());
                    expect = "change " + s[1] + " " + s[2];
                    break;
                default:
                    writer.delete().forPath(s[1]);
                    expect = "delete " + s[1];
            }
            String got = events.poll(10, TimeUnit.SECONDS);
            if (!expect.equals(got)) {
                fail("cache", "step " + steps + ": expected event '" + expect + "', got '" + got + "'");
            }
            steps++;
        }
        // A burst of writes: the cache must converge to the server's tree.
        for (int i = 0; i < 50; i++) {
            writer.create().creatingParentsIfNeeded().forPath(root + "/burst/n" + i, ("v" + i).getBytes());
            writer.setData().forPath(root + "/a", ("burst" + i).getBytes());
        }
        for (int i = 0; i < 50; i += 2) {
            writer.delete().forPath(root + "/burst/n" + i);
        }
        Map<String, String> truth = new TreeMap<>();
        walk(writer, root, truth);
        long deadline = System.currentTimeMillis() + 20_000;
        Map<String, String> seen = new TreeMap<>();
        while (System.currentTimeMillis() < deadline) {
            seen.clear();
            cache.stream().forEach(cd -> seen.put(cd.getPath(), new String(cd.getData())));
            if (seen.equals(truth)) {
                break;
            }
            Thread.sleep(50);
        }
        if (!seen.equals(truth)) {
            fail("cache", "cache " + seen + " != tree " + truth);
        }
        System.out.println("cache: " + steps + " single changes seen in order; burst converged to " + truth.size() + " nodes");
        cache.close();
        writer.close();
        reader.close();
    }

    static void walk(CuratorFramework c, String path, Map<String, String> out) throws Exception {
        out.put(path, new String(c.getData().forPath(path)));
        List<String> kids = c.getChildren().forPath(path);
        Collections.sort(kids);
        for (String k : kids) {
            walk(c, path + "/" + k, out);
        }
    }
}
