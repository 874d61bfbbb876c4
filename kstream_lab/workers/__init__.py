"""The pipeline's workers: enricher, aggregator, sink (each a small loop over kstream_lab.kafka)."""
