"""One file per schema revision; revision "000N" sets `hpsearch_meta.schema_version` to N."""
