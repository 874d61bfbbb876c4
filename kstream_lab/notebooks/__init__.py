"""Running notebooks unattended: papermill runs with lineage, a run registry and schedules."""
