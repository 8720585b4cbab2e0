/*
 * cqrsflow local stack: the project's own Elasticsearch launcher.
 *
 * Starts one Elasticsearch 8 node from the jars on Maven Central (server +
 * transport-netty4), without the official distribution, its CLI or Docker.
 *
 * Usage: java -cp <launcher jar>:<lib/*> cqrsflow.localstack.es.Main
 *            <path.home> [-Ekey=value ...]
 * The config dir is <path.home>/config (elasticsearch.yml and
 * log4j2.properties, both optional), -E settings override it, exactly like
 * the stock CLI. Runs in the foreground until SIGTERM/SIGINT, then closes the
 * node cleanly (flushes shards) before exiting.
 *
 * Not done here, on purpose: the bootstrap of the stock distribution
 * (org.elasticsearch.bootstrap.Elasticsearch) - security manager, seccomp,
 * bootstrap checks and its "can not run elasticsearch as root" refusal.
 * This is a development node bound to 127.0.0.1 only.
 */
package cqrsflow.localstack.es;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.ClasspathNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class Main {

    private static final List<Class<? extends Plugin>> PLUGINS = List.of(Netty4Plugin.class, RootInfoPlugin.class);

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Main <path.home> [-Ekey=value ...]");
            System.exit(64);
        }
        Map<String, String> overrides = new HashMap<>();
        overrides.put("path.home", args[0]);
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            int eq = a.indexOf('=');
            if (a.startsWith("-E") == false || eq < 3) {
                System.err.println("bad argument (want -Ekey=value): " + a);
                System.exit(64);
            }
            overrides.put(a.substring(2, eq), a.substring(eq + 1));
        }

        // Same order as the stock bootstrap: catch log4j status errors early,
        // build the environment (elasticsearch.yml + overrides), then logging.
        LogConfigurator.registerErrorListener();
        Environment env = InternalSettingsPreparer.prepareEnvironment(Settings.EMPTY, overrides, null, () -> "cqrsflow-local");
        String nodeName = Node.NODE_NAME_SETTING.get(env.settings());
        LogConfigurator.setNodeName(nodeName);
        LogConfigurator.configure(env, true);

        Node node = new ClasspathNode(env, PLUGINS);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "cqrsflow-es-shutdown"));

        try {
            node.start();
        } catch (Throwable t) {
            t.printStackTrace();
            // One readable line last, so the tail of the log names the cause.
            StringBuilder why = new StringBuilder("cqrsflow launcher: Elasticsearch failed to start: ").append(t);
            for (Throwable c = t.getCause(); c != null; c = c.getCause()) {
                why.append(" <- caused by ").append(c);
            }
            System.err.println(why);
            // halt: the shutdown hook would try to close a half-started node.
            Runtime.getRuntime().halt(1);
        }
        // Elasticsearch's own threads are daemons; keep the JVM alive until
        // the shutdown hook has closed the node.
        stopped.await();
    }
}
