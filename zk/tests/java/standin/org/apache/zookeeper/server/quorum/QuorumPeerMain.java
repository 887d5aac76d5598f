package org.apache.zookeeper.server.quorum;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.util.Properties;

/**
 * Stand-in for Apache ZooKeeper's server entry point, used to run unmodified client test suites
 * (kazoo's harness launches {@code java -cp ... org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg})
 * against Kiln. It reads the zoo.cfg the harness wrote, writes a Kiln zoo.cfg next to it with the
 * settings that matter for a single server (client port, data dir, tick time, 4lw whitelist, super
 * digest from the {@code zookeeper.DigestAuthenticationProvider.superDigest} system property), starts
 * {@code $KILN_BIN zk --config <that file>} and forwards termination to it; Kiln also stops when this
 * JVM is killed without running its shutdown hook (parent-death signal).
 */
public final class QuorumPeerMain {
    private static final String[] PASSED_KEYS = {
        "tickTime", "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "maxClientCnxns",
        "minSessionTimeout", "maxSessionTimeout", "4lw.commands.whitelist", "extendedTypesEnabled",
        "jute.maxbuffer", "snapCount",
    };

    private static final String SETPRIV = "/usr/bin/setpriv";

    private QuorumPeerMain() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: QuorumPeerMain zoo.cfg");
            System.exit(2);
        }
        File cfg = new File(args[args.length - 1]).getAbsoluteFile();
        Properties in = new Properties();
        try (InputStream s = new FileInputStream(cfg)) {
            in.load(s);
        }
        for (String k : in.stringPropertyNames()) {
            if (k.startsWith("server.")) {
                System.err.println("QuorumPeerMain stand-in: multi-server configuration is not supported: " + k);
                System.exit(2);
            }
        }
        String bin = System.getenv("KILN_BIN");
        if (bin == null || bin.isEmpty()) {
            System.err.println("QuorumPeerMain stand-in: KILN_BIN is not set");
            System.exit(2);
        }
        File out = new File(cfg.getParentFile(), "kiln-zoo.cfg");
        try (PrintWriter w = new PrintWriter(out, "UTF-8")) {
            for (String k : PASSED_KEYS) {
                String v = in.getProperty(k);
                if (v != null) {
                    w.println(k + "=" + v.trim());
                }
            }
            w.println("admin.enableServer=false");
            if (in.getProperty("4lw.commands.whitelist") == null) {
                w.println("4lw.commands.whitelist=*");
            }
            String digest = System.getProperty("zookeeper.DigestAuthenticationProvider.superDigest");
            if (digest != null && !digest.isEmpty()) {
                w.println("DigestAuthenticationProvider.superDigest=" + digest);
            }
        }
        File log = new File(cfg.getParentFile(), "zookeeper.log");
        // The shutdown hook below does not run when the JVM is killed (SIGKILL, a crash): started
        // through util-linux's setpriv with a parent-death signal, Kiln gets SIGTERM when this JVM
        // goes, however it goes, so no server is left behind holding the port and data dir.
        java.util.List<String> cmd = new java.util.ArrayList<>();
        if (new File(SETPRIV).canExecute()) {
            cmd.add(SETPRIV);
            cmd.add("--pdeathsig");
            cmd.add("TERM");
            cmd.add("--");
        }
        cmd.add(bin);
        cmd.add("zk");
        cmd.add("--config");
        cmd.add(out.getPath());
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.redirectErrorStream(true);
        pb.redirectOutput(ProcessBuilder.Redirect.appendTo(log));
        final Process p = pb.start();
        Thread hook = new Thread(() -> {
            if (p.isAlive()) {
                p.destroy(); // SIGTERM
                try {
                    if (!p.waitFor(20, java.util.concurrent.TimeUnit.SECONDS)) {
                        p.destroyForcibly();
                        p.waitFor();
                    }
                } catch (InterruptedException e) {
                    p.destroyForcibly();
                }
            }
        });
        Runtime.getRuntime().addShutdownHook(hook);
        int rc;
        try {
            rc = p.waitFor();
        } catch (InterruptedException e) {
            rc = 1;
        }
        System.exit(rc);
    }
}
