package dev.kstreamlab.connect;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.LogicalType;
import org.apache.avro.LogicalTypes;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.util.Utf8;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.data.Decimal;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.data.Timestamp;
import org.apache.kafka.connect.errors.DataException;
import org.apache.kafka.connect.errors.RetriableException;
import org.apache.kafka.connect.storage.Converter;

/**
 * Reads Confluent-framed Avro (magic byte 0, a 4-byte big-endian schema id, the Avro binary body)
 * into Connect data, fetching each writer schema once by id from a registry's Confluent REST API
 * ({@code GET /schemas/ids/{id}}).
 *
 * <p>It reads the settings Confluent's {@code io.confluent.connect.avro.AvroConverter} reads
 * ({@code schema.registry.url}, {@code basic.auth.credentials.source=USER_INFO},
 * {@code basic.auth.user.info}), and maps Avro to Connect the way that converter does for the types
 * it supports (records, primitives, enums as strings, arrays, string-keyed maps, optional unions
 * {@code [null, T]}, decimal/date/time-millis/timestamp-millis logical types), so a deployment with
 * Confluent's converter replaces this one by changing the class name alone.
 *
 * <p>It is a sink-side converter: {@link #fromConnectData} refuses (writing Avro needs schema
 * registration, which kstream_lab's Python producers do).
 */
public final class ConfluentAvroConverter implements Converter {
    public static final String URL = "schema.registry.url";
    public static final String CREDENTIALS_SOURCE = "basic.auth.credentials.source";
    public static final String USER_INFO = "basic.auth.user.info";

    private static final byte MAGIC = 0;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Map<Integer, Decoded> byId = new ConcurrentHashMap<>();
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    private List<String> urls = List.of();
    private String authorization;

    /** A writer schema, its Connect twin and a reader for it. */
    private record Decoded(org.apache.avro.Schema avro, Schema connect, GenericDatumReader<Object> reader) {}

    @Override
    public ConfigDef config() {
        return new ConfigDef()
                .define(URL, ConfigDef.Type.LIST, ConfigDef.Importance.HIGH,
                        "Registry URL(s) serving Confluent's REST API")
                .define(CREDENTIALS_SOURCE, ConfigDef.Type.STRING, "", ConfigDef.Importance.MEDIUM,
                        "USER_INFO for HTTP basic auth (blank: none)")
                .define(USER_INFO, ConfigDef.Type.PASSWORD, "", ConfigDef.Importance.MEDIUM,
                        "user:password for HTTP basic auth");
    }

    @Override
    public void configure(Map<String, ?> configs, boolean isKey) {
        Object url = configs.get(URL);
        if (url == null || url.toString().isBlank()) {
            throw new org.apache.kafka.common.config.ConfigException(
                    URL + " is required: the registry whose Confluent API serves the schemas by id");
        }
        List<String> list = new ArrayList<>();
        for (String u : url.toString().split(",")) {
            if (!u.isBlank()) {
                list.add(u.trim().replaceAll("/+$", ""));
            }
        }
        urls = List.copyOf(list);
        Object source = configs.get(CREDENTIALS_SOURCE);
        Object info = configs.get(USER_INFO);
        String userInfo = info == null ? "" : passwordValue(info);
        if (source != null && !source.toString().isBlank() && !"USER_INFO".equalsIgnoreCase(source.toString())) {
            throw new org.apache.kafka.common.config.ConfigException(
                    CREDENTIALS_SOURCE + "=" + source + " is not supported; use USER_INFO (or leave it unset)");
        }
        if (!userInfo.isEmpty()) {
            authorization = "Basic " + Base64.getEncoder().encodeToString(userInfo.getBytes(StandardCharsets.UTF_8));
        }
    }

    private static String passwordValue(Object value) {
        if (value instanceof org.apache.kafka.common.config.types.Password p) {
            return p.value();
        }
        return value.toString();
    }

    @Override
    public byte[] fromConnectData(String topic, Schema schema, Object value) {
        throw new DataException("dev.kstreamlab.connect.ConfluentAvroConverter only reads (a sink converter); "
                + "to write Avro from Connect use Confluent's AvroConverter");
    }

    @Override
    public SchemaAndValue toConnectData(String topic, byte[] value) {
        if (value == null) {
            return SchemaAndValue.NULL;
        }
        if (value.length < 5 || value[0] != MAGIC) {
            throw new DataException("topic " + topic + ": not Confluent-framed Avro (" + value.length
                    + " bytes, first byte " + (value.length == 0 ? "none" : value[0]) + ", expected magic byte 0 "
                    + "and a 4-byte schema id)");
        }
        int id = ByteBuffer.wrap(value, 1, 4).getInt();
        Decoded decoded = byId.computeIfAbsent(id, this::fetch);
        Object datum;
        try {
            BinaryDecoder decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null);
            datum = decoded.reader().read(null, decoder);
            if (!decoder.isEnd()) {
                throw new DataException("topic " + topic + ": " + (value.length - 5)
                        + " bytes of Avro body but the record ended early (schema id " + id + ")");
            }
        } catch (IOException | RuntimeException e) {
            if (e instanceof DataException de) {
                throw de;
            }
            throw new DataException("topic " + topic + ": the Avro body does not match schema id " + id + ": " + e, e);
        }
        return new SchemaAndValue(decoded.connect(), toConnect(decoded.connect(), decoded.avro(), datum));
    }

    // ---- the registry --------------------------------------------------------------------------

    /**
     * The writer schema by id. A registry that cannot be reached, times out or answers 5xx/429 raises a
     * {@link RetriableException}: Connect retries it (the connector's {@code errors.retry.timeout})
     * instead of tolerating it, so a registry restart never sends good records to the dead-letter topic.
     */
    private Decoded fetch(int id) {
        org.apache.kafka.connect.errors.ConnectException last = null;
        for (String base : urls) {
            HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base + "/schemas/ids/" + id))
                    .timeout(Duration.ofSeconds(30))
                    .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
            if (authorization != null) {
                request.header("Authorization", authorization);
            }
            try {
                HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
                int status = response.statusCode();
                if (status != 200) {
                    String message = "schema id " + id + ": " + base + " answered HTTP " + status + ": " + response.body();
                    if (status == 404 || status == 401 || status == 403) {
                        throw new DataException(message);
                    }
                    last = status >= 500 || status == 429 ? new RetriableException(message) : new DataException(message);
                    continue;
                }
                JsonNode body = JSON.readTree(response.body());
                String type = body.path("schemaType").asText("AVRO");
                if (!"AVRO".equals(type)) {
                    throw new DataException("schema id " + id + " is " + type + ", not AVRO: this converter reads Avro");
                }
                org.apache.avro.Schema avro = new org.apache.avro.Schema.Parser().parse(body.path("schema").asText());
                return new Decoded(avro, toConnectSchema(avro, false), new GenericDatumReader<>(avro));
            } catch (IOException e) {
                last = new RetriableException("schema id " + id + ": cannot reach " + base + ": " + e, e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new DataException("interrupted while fetching schema id " + id, e);
            }
        }
        throw last != null ? last : new DataException("no schema.registry.url configured");
    }

    // ---- Avro schema -> Connect schema -----------------------------------------------------------

    static Schema toConnectSchema(org.apache.avro.Schema avro, boolean optional) {
        SchemaBuilder builder;
        LogicalType logical = avro.getLogicalType();
        switch (avro.getType()) {
            case RECORD -> {
                builder = SchemaBuilder.struct().name(avro.getFullName());
                for (org.apache.avro.Schema.Field f : avro.getFields()) {
                    builder.field(f.name(), toConnectSchema(f.schema(), false));
                }
            }
            case UNION -> {
                org.apache.avro.Schema inner = nullableInner(avro);
                return toConnectSchema(inner, true);
            }
            case INT -> builder = logical instanceof LogicalTypes.Date
                    ? org.apache.kafka.connect.data.Date.builder()
                    : logical instanceof LogicalTypes.TimeMillis
                            ? org.apache.kafka.connect.data.Time.builder()
                            : SchemaBuilder.int32();
            case LONG -> builder = logical instanceof LogicalTypes.TimestampMillis
                    ? Timestamp.builder()
                    : SchemaBuilder.int64();
            case BYTES, FIXED -> builder = logical instanceof LogicalTypes.Decimal d
                    ? Decimal.builder(d.getScale())
                    : SchemaBuilder.bytes();
            case STRING, ENUM -> builder = SchemaBuilder.string();
            case BOOLEAN -> builder = SchemaBuilder.bool();
            case FLOAT -> builder = SchemaBuilder.float32();
            case DOUBLE -> builder = SchemaBuilder.float64();
            case ARRAY -> builder = SchemaBuilder.array(toConnectSchema(avro.getElementType(), false));
            case MAP -> builder = SchemaBuilder.map(Schema.STRING_SCHEMA, toConnectSchema(avro.getValueType(), false));
            case NULL -> throw new DataException("a field of Avro type null has no Connect equivalent");
            default -> throw new DataException("Avro type " + avro.getType() + " is not supported");
        }
        if (optional) {
            builder.optional();
        }
        if (avro.getDoc() != null && avro.getType() == org.apache.avro.Schema.Type.RECORD) {
            builder.doc(avro.getDoc());
        }
        return builder.build();
    }

    private static org.apache.avro.Schema nullableInner(org.apache.avro.Schema union) {
        List<org.apache.avro.Schema> types = union.getTypes();
        if (types.size() == 2) {
            if (types.get(0).getType() == org.apache.avro.Schema.Type.NULL) {
                return types.get(1);
            }
            if (types.get(1).getType() == org.apache.avro.Schema.Type.NULL) {
                return types.get(0);
            }
        }
        throw new DataException("Avro union " + union + " is not supported: only [null, T] (an optional T)");
    }

    // ---- Avro datum -> Connect value -------------------------------------------------------------

    static Object toConnect(Schema schema, org.apache.avro.Schema avro, Object datum) {
        if (datum == null) {
            return null;
        }
        if (avro.getType() == org.apache.avro.Schema.Type.UNION) {
            return toConnect(schema, nullableInner(avro), datum);
        }
        LogicalType logical = avro.getLogicalType();
        switch (avro.getType()) {
            case RECORD -> {
                GenericRecord record = (GenericRecord) datum;
                Struct struct = new Struct(schema);
                for (org.apache.avro.Schema.Field f : avro.getFields()) {
                    Field cf = schema.field(f.name());
                    struct.put(cf, toConnect(cf.schema(), f.schema(), record.get(f.pos())));
                }
                return struct;
            }
            case INT -> {
                int v = (Integer) datum;
                if (logical instanceof LogicalTypes.Date) {
                    return new Date(v * 86_400_000L);
                }
                if (logical instanceof LogicalTypes.TimeMillis) {
                    return new Date(v);
                }
                return v;
            }
            case LONG -> {
                long v = (Long) datum;
                return logical instanceof LogicalTypes.TimestampMillis ? new Date(v) : v;
            }
            case STRING, ENUM -> {
                return datum instanceof Utf8 || datum instanceof GenericData.EnumSymbol ? datum.toString() : datum;
            }
            case BYTES, FIXED -> {
                byte[] bytes;
                if (datum instanceof ByteBuffer buffer) {
                    bytes = new byte[buffer.remaining()];
                    buffer.duplicate().get(bytes);
                } else {
                    bytes = ((GenericFixed) datum).bytes().clone();
                }
                if (logical instanceof LogicalTypes.Decimal d) {
                    return new BigDecimal(new BigInteger(bytes), d.getScale());
                }
                return bytes;
            }
            case BOOLEAN, FLOAT, DOUBLE -> {
                return datum;
            }
            case ARRAY -> {
                List<Object> out = new ArrayList<>();
                for (Object item : (java.util.Collection<?>) datum) {
                    out.add(toConnect(schema.valueSchema(), avro.getElementType(), item));
                }
                return out;
            }
            case MAP -> {
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<?, ?> e : ((Map<?, ?>) datum).entrySet()) {
                    out.put(e.getKey().toString(), toConnect(schema.valueSchema(), avro.getValueType(), e.getValue()));
                }
                return out;
            }
            default -> throw new DataException("Avro type " + avro.getType() + " is not supported");
        }
    }

    @Override
    public void close() {
        byId.clear();
    }

    /** For tests and tools: the Connect data of {@code value} with a given writer schema (no registry). */
    public static SchemaAndValue decodeWith(org.apache.avro.Schema avro, byte[] body) throws IOException {
        Schema connect = toConnectSchema(avro, false);
        Object datum = new GenericDatumReader<>(avro).read(null, DecoderFactory.get().binaryDecoder(body, null));
        return new SchemaAndValue(connect, toConnect(connect, avro, datum));
    }
}
