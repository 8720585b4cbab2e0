/*
 * cqrsflow local stack: part of the project's own Elasticsearch launcher.
 *
 * In 8.15 the public Node(Environment) constructor loads plugins from the
 * modules/ and plugins/ directories of a distribution. The package-private
 * constructor Node(NodeConstruction) plus a NodeServiceProvider (also
 * package-private) let us hand it a PluginsService that serves class path
 * plugins (transport-netty4 for HTTP, our own root-info plugin). Hence this
 * class sits in org.elasticsearch.node.
 */
package org.elasticsearch.node;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsService;

import java.util.List;

public class ClasspathNode extends Node {

    public ClasspathNode(Environment environment, List<Class<? extends Plugin>> pluginClasses) {
        super(NodeConstruction.prepareConstruction(environment, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, Settings settings) {
                return new ClasspathPluginsService(settings, env.configFile(), pluginClasses);
            }
        }, true));
    }
}
