package dev.kstreamlab.peers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * The orders aggregation of pipelines/orders.yaml in Kafka Streams: JSON EnrichedOrder values, event time
 * from the "timestamp" field, tumbling windows of SIZE with GRACE, sum of total_cents and count per
 * loyalty tier, final results only (suppress until the window closes), exactly_once_v2.
 *
 * <p>Arguments: bootstrap input-topic output-topic application-id window-ms grace-ms [commit-interval-ms]
 * (default 100, Kafka Streams' own default under exactly-once).
 */
public final class OrdersAggregation {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** One parsed order: the fields the aggregation reads. */
    public record Order(String tier, long totalCents, long timestamp) {}

    /** The running aggregate: sum of total_cents and count, 16 bytes. */
    public record Sales(long totalCents, long count) {}

    public static final class OrderDeserializer implements Deserializer<Order> {
        @Override
        public Order deserialize(String topic, byte[] data) {
            try {
                JsonNode n = JSON.readTree(data);
                return new Order(
                        n.get("loyalty_tier").asText(), n.get("total_cents").asLong(), n.get("timestamp").asLong());
            } catch (IOException e) {
                throw new org.apache.kafka.common.errors.SerializationException(e);
            }
        }
    }

    public static final class SalesSerializer implements Serializer<Sales> {
        @Override
        public byte[] serialize(String topic, Sales s) {
            return java.nio.ByteBuffer.allocate(16).putLong(s.totalCents()).putLong(s.count()).array();
        }
    }

    public static final class SalesDeserializer implements Deserializer<Sales> {
        @Override
        public Sales deserialize(String topic, byte[] data) {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(data);
            return new Sales(b.getLong(), b.getLong());
        }
    }

    public static final class OrderSerializer implements Serializer<Order> {
        @Override
        public byte[] serialize(String topic, Order o) {
            byte[] tier = o.tier().getBytes(java.nio.charset.StandardCharsets.UTF_8);
            return java.nio.ByteBuffer.allocate(16 + tier.length)
                    .putLong(o.totalCents())
                    .putLong(o.timestamp())
                    .put(tier)
                    .array();
        }
    }

    public static final class OrderBinaryDeserializer implements Deserializer<Order> {
        @Override
        public Order deserialize(String topic, byte[] data) {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(data);
            long cents = b.getLong();
            long ts = b.getLong();
            return new Order(new String(data, 16, data.length - 16, java.nio.charset.StandardCharsets.UTF_8), cents, ts);
        }
    }

    /** Event time from the value's "timestamp" field (epoch ms), as the aggregator's time_field. */
    public static final class EventTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            Object v = record.value();
            return v instanceof Order o ? o.timestamp() : record.timestamp();
        }
    }

    public static void main(String[] args) throws InterruptedException {
        String bootstrap = args[0], input = args[1], output = args[2], appId = args[3];
        long windowMs = Long.parseLong(args[4]), graceMs = Long.parseLong(args[5]);
        long commitMs = args.length > 6 ? Long.parseLong(args[6]) : 100;

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
        props.put(StreamsConfig.STATE_DIR_CONFIG, System.getProperty("java.io.tmpdir") + "/kstreams-" + appId);
        props.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, EventTime.class);
        props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

        Serde<Order> orderJson = Serdes.serdeFrom(new OrderSerializer(), new OrderDeserializer());
        Serde<Order> orderBinary = Serdes.serdeFrom(new OrderSerializer(), new OrderBinaryDeserializer());
        Serde<Sales> sales = Serdes.serdeFrom(new SalesSerializer(), new SalesDeserializer());

        StreamsBuilder builder = new StreamsBuilder();
        builder.stream(input, Consumed.with(Serdes.String(), orderJson))
                .groupBy((key, order) -> order.tier(), Grouped.with("by-tier", Serdes.String(), orderBinary))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(windowMs), Duration.ofMillis(graceMs)))
                .aggregate(
                        () -> new Sales(0, 0),
                        (tier, order, agg) -> new Sales(agg.totalCents() + order.totalCents(), agg.count() + 1),
                        Materialized.with(Serdes.String(), sales))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
                .toStream()
                .map((windowed, agg) -> new org.apache.kafka.streams.KeyValue<>(
                        windowed.key() + "@" + windowed.window().start(),
                        "{\"tier\":\"" + windowed.key() + "\",\"window_start\":" + windowed.window().start()
                                + ",\"total_cents\":" + agg.totalCents() + ",\"count\":" + agg.count() + "}"))
                .to(output, Produced.with(Serdes.String(), Serdes.String()));

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch done = new CountDownLatch(1);
        AtomicBoolean closing = new AtomicBoolean(false);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            closing.set(true);
            streams.close(Duration.ofSeconds(20));
            done.countDown();
        }));
        // a failed stream thread ends the process (exit 1), so the bench sees it instead of waiting
        streams.setUncaughtExceptionHandler(e -> {
            e.printStackTrace();
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_CLIENT;
        });
        streams.setStateListener((now, before) -> {
            if (!closing.get() && (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.PENDING_SHUTDOWN)) {
                System.err.println("streams " + before + " -> " + now);
                new Thread(() -> System.exit(1)).start();
            }
        });
        streams.start();
        System.err.println("started " + appId);
        done.await();
    }
}
