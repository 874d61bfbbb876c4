"""Running notebooks unattended: papermill runs with lineage, a run log and schedules."""
