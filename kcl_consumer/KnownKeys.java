/*
 * The property keys KCL's MultiLangDaemon acts on, read from the daemon's own classes.
 *
 * The daemon hands every key of its .properties file to commons-beanutils
 * (KinesisClientLibConfigurator.getConfiguration -> BeanUtilsBean.setProperty on a
 * MultiLangDaemonConfiguration), which silently ignores a key that names no writable
 * property. So the keys that do something are exactly:
 *   - the writable bean properties of MultiLangDaemonConfiguration (case-sensitive; only
 *     a key starting with "AwsCredentialsProvider", in any case, is rewritten first);
 *   - one level of nested properties, "bean.property", of the beans it exposes through
 *     getters (fanoutConfig, pollingConfig, ...; the AWS client builders kinesisClient,
 *     dynamoDbClient, cloudWatchClient, whose properties are their builder methods);
 *   - the keys MultiLangDaemonConfig reads from java.util.Properties itself.
 *
 * Run with the daemon's classpath (Java 11+ runs a single source file, no build step):
 *   java -cp "$(lazyrep kcl classpath)" kcl_consumer/KnownKeys.java keys
 *       one key per line, sorted: what kcl_consumer/known_keys.py records
 *   java -cp "$(lazyrep kcl classpath)" kcl_consumer/KnownKeys.java check FILE...
 *       one JSON object per file: the keys the daemon would ignore, and the values the
 *       real configurator resolved (client regions, endpoints, timings), or its error
 */

import com.fasterxml.jackson.databind.ObjectMapper;
import java.beans.PropertyDescriptor;
import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SortedSet;
import java.util.TreeSet;
import org.apache.commons.beanutils.BeanUtilsBean;
import org.apache.commons.beanutils.ConvertUtilsBean;
import org.apache.commons.beanutils.DynaBean;
import org.apache.commons.beanutils.DynaProperty;
import org.apache.commons.beanutils.PropertyUtilsBean;
import software.amazon.awssdk.regions.Region;
import software.amazon.kinesis.multilang.config.BuilderDynaBean;
import software.amazon.kinesis.multilang.config.KinesisClientLibConfigurator;
import software.amazon.kinesis.multilang.config.MultiLangDaemonConfiguration;

public class KnownKeys {
    /** Read by MultiLangDaemonConfig with Properties.getProperty, not through beanutils. */
    static final String[] DIRECT_KEYS = {"executableName", "processingLanguage", "maxActiveThreads"};

    static final String CONFIG_PACKAGE = "software.amazon.kinesis.multilang.config.";

    static MultiLangDaemonConfiguration freshConfiguration() {
        ConvertUtilsBean convert = new ConvertUtilsBean();
        return new MultiLangDaemonConfiguration(new BeanUtilsBean(convert), convert);
    }

    static SortedSet<String> keys() throws Exception {
        MultiLangDaemonConfiguration config = freshConfiguration();
        PropertyUtilsBean utils = config.getUtilsBean().getPropertyUtils();
        SortedSet<String> keys = new TreeSet<>(List.of(DIRECT_KEYS));
        for (PropertyDescriptor property : utils.getPropertyDescriptors(config)) {
            String name = property.getName();
            if (property.getWriteMethod() != null) {
                keys.add(name);
            }
            Class<?> type = property.getPropertyType();
            boolean isBean = type != null
                    && (type == BuilderDynaBean.class || type.getName().startsWith(CONFIG_PACKAGE));
            if (property.getReadMethod() == null || !isBean) {
                continue;
            }
            Object nested = property.getReadMethod().invoke(config);
            if (nested instanceof BuilderDynaBean) {
                try {
                    for (DynaProperty p : ((DynaBean) nested).getDynaClass().getDynaProperties()) {
                        keys.add(name + "." + p.getName());
                    }
                } catch (IllegalStateException e) {
                    // The credentials-provider beans: an interface with no builder, so no
                    // nested keys (they are set through AwsCredentialsProvider* instead).
                }
            } else if (nested != null && nested.getClass().getName().startsWith(CONFIG_PACKAGE)) {
                for (PropertyDescriptor p : utils.getPropertyDescriptors(nested)) {
                    if (p.getWriteMethod() != null) {
                        keys.add(name + "." + p.getName());
                    }
                }
            }
        }
        return keys;
    }

    /** KinesisClientLibConfigurator.processKey: the only case-insensitive rewrite. */
    static String normalise(String key) {
        if (key.toLowerCase().startsWith("awscredentialsprovider")) {
            return key.replaceAll("(?i)awscredentialsprovider", "awsCredentialsProvider");
        }
        return key;
    }

    /** A value set on a client builder bean (no client is built: that is slow). */
    static String clientSetting(BuilderDynaBean bean, String name) {
        Object value = bean.get(name);
        if (value instanceof BuilderDynaBean) {
            return null; // get() of an unset property answers a fresh, empty nested bean
        }
        if (value instanceof Region) {
            return ((Region) value).id();
        }
        return value == null ? null : value.toString();
    }

    static Map<String, Object> check(String file, SortedSet<String> known) throws Exception {
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(file)) {
            properties.load(in);
        }
        Map<String, Object> result = new LinkedHashMap<>();
        result.put("file", file);
        List<String> unknown = new ArrayList<>();
        for (String key : new TreeSet<>(properties.stringPropertyNames())) {
            if (!known.contains(normalise(key))) {
                unknown.add(key);
            }
        }
        result.put("unknown", unknown);
        try {
            MultiLangDaemonConfiguration config = new KinesisClientLibConfigurator().getConfiguration(properties);
            Map<String, Object> resolved = new LinkedHashMap<>();
            resolved.put("applicationName", config.getApplicationName());
            resolved.put("streamName", config.getStreamName());
            resolved.put("kinesisRegion", clientSetting(config.getKinesisClient(), "region"));
            resolved.put("dynamoDbRegion", clientSetting(config.getDynamoDbClient(), "region"));
            resolved.put("cloudWatchRegion", clientSetting(config.getCloudWatchClient(), "region"));
            resolved.put("kinesisEndpoint", clientSetting(config.getKinesisClient(), "endpointOverride"));
            resolved.put("dynamoDbEndpoint", clientSetting(config.getDynamoDbClient(), "endpointOverride"));
            resolved.put("cloudWatchEndpoint", clientSetting(config.getCloudWatchClient(), "endpointOverride"));
            resolved.put("retrievalMode", String.valueOf(config.getRetrievalMode()));
            resolved.put("metricsLevel", String.valueOf(config.getMetricsLevel()));
            resolved.put("shutdownGraceMillis", config.getShutdownGraceMillis());
            resolved.put("failoverTimeMillis", config.getFailoverTimeMillis());
            resolved.put("maxRecords", config.getMaxRecords());
            resolved.put("idleTimeBetweenReadsInMillis", config.getIdleTimeBetweenReadsInMillis());
            resolved.put("disableWorkerMetrics", config.getDisableWorkerMetrics());
            resolved.put("gracefulLeaseHandoffTimeoutMillis", config.getGracefulLeaseHandoffTimeoutMillis());
            resolved.put("isGracefulLeaseHandoffEnabled", config.getIsGracefulLeaseHandoffEnabled());
            resolved.put("initialPositionInStream", String.valueOf(config.getInitialPositionInStream()));
            resolved.put("timeoutInSeconds", config.getTimeoutInSeconds());
            result.put("resolved", resolved);
        } catch (RuntimeException e) {
            Throwable cause = e;
            while (cause.getCause() != null) {
                cause = cause.getCause();
            }
            result.put("error", cause.getClass().getSimpleName() + ": " + cause.getMessage());
        }
        return result;
    }

    public static void main(String[] args) throws Exception {
        if (args.length >= 1 && args[0].equals("keys")) {
            keys().forEach(System.out::println);
        } else if (args.length >= 2 && args[0].equals("check")) {
            SortedSet<String> known = keys();
            ObjectMapper json = new ObjectMapper();
            for (int i = 1; i < args.length; i++) {
                System.out.println(json.writeValueAsString(check(args[i], known)));
            }
        } else {
            System.err.println("usage: KnownKeys keys | KnownKeys check FILE...");
            System.exit(2);
        }
        System.exit(0); // the SDK clients' event loops must not keep the JVM alive
    }
}
