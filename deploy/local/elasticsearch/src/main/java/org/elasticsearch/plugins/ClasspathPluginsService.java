/*
 * cqrsflow local stack: part of the project's own Elasticsearch launcher.
 *
 * Elasticsearch's PluginsService normally loads plugins and modules from
 * directories (each with a plugin-descriptor and its own class loader). Maven
 * Central only has the jars, not the distribution's modules/ directory, so
 * this subclass serves a fixed list of plugin classes that are already on the
 * JVM class path instead. It lives in org.elasticsearch.plugins because the
 * LoadedPlugin record it must return is package-private (split packages are
 * fine: everything runs in the unnamed module of the class path).
 */
package org.elasticsearch.plugins;

import org.elasticsearch.Build;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.jdk.ModuleQualifiedExportsService;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

public class ClasspathPluginsService extends PluginsService {

    private final List<LoadedPlugin> classpathPlugins;

    public ClasspathPluginsService(Settings settings, Path configPath, List<Class<? extends Plugin>> pluginClasses) {
        // null directories: load nothing from disk, only the classes we are given.
        super(settings, configPath, null, null);
        List<LoadedPlugin> loaded = new ArrayList<>();
        for (Class<? extends Plugin> cls : pluginClasses) {
            PluginDescriptor descriptor = new PluginDescriptor(
                cls.getSimpleName(),            // name
                "class path plugin " + cls.getName(),
                Build.current().version(),      // plugin version
                Build.current().version(),      // elasticsearch version it was built for
                "17",                           // java version
                cls.getName(),                  // class name
                null,                           // module name (not modular)
                List.of(),                      // extended plugins
                false,                          // native controller
                false,                          // licensed
                false,                          // modular
                false                           // stable plugin API
            );
            loaded.add(new LoadedPlugin(descriptor, instantiate(cls, settings, configPath)));
        }
        this.classpathPlugins = List.copyOf(loaded);
    }

    /**
     * The server is not a named module on the class path (no module
     * descriptor), so there are no qualified exports to wire up.
     */
    @Override
    protected void addServerExportsService(Map<String, List<ModuleQualifiedExportsService>> qualifiedExports) {}

    /** Every use of the plugin list inside PluginsService goes through this method. */
    @Override
    protected List<LoadedPlugin> plugins() {
        return classpathPlugins;
    }

    /** Plugins have a no-arg, (Settings) or (Settings, Path) constructor. */
    private static Plugin instantiate(Class<? extends Plugin> cls, Settings settings, Path configPath) {
        try {
            for (var ctor : cls.getConstructors()) {
                Class<?>[] params = ctor.getParameterTypes();
                if (params.length == 2 && params[0] == Settings.class && params[1] == Path.class) {
                    return (Plugin) ctor.newInstance(settings, configPath);
                }
            }
            for (var ctor : cls.getConstructors()) {
                Class<?>[] params = ctor.getParameterTypes();
                if (params.length == 1 && params[0] == Settings.class) {
                    return (Plugin) ctor.newInstance(settings);
                }
            }
            return cls.getConstructor().newInstance();
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot instantiate plugin " + cls.getName(), e);
        }
    }
}
