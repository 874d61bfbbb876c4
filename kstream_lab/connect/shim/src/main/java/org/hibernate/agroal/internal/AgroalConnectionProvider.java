package org.hibernate.agroal.internal;

/**
 * A stand-in for hibernate-agroal's connection provider, which is not obtainable here.
 *
 * <p>Debezium's JDBC sink (3.6) names this class as the default of {@code connection.provider}
 * ({@code AgroalConnectionProvider.class.getName()} in its config's static initialiser), so the
 * connector cannot even be validated without a class of this name on its class path. kstream_lab
 * configures {@code connection.provider} and {@code hibernate.connection.provider_class} to
 * Hibernate's DriverManagerConnectionProviderImpl instead; this class only lets that name load, and
 * refuses to be used as a provider.
 */
public final class AgroalConnectionProvider {
    public AgroalConnectionProvider() {
        throw new UnsupportedOperationException(
                "hibernate-agroal is not installed: set connection.provider to "
                        + "org.hibernate.engine.jdbc.connections.internal.DriverManagerConnectionProviderImpl");
    }
}
