"""Integration with render farms: the warm service, its client, watch folders, farm job adapters."""
