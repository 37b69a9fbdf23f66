"""Bulk import of SKUs and channel mappings from CSV or XLSX files.

The import runs in two phases so that bad rows never block good ones and a crash leaves
nothing half-applied:

1. Validate (`validate.RowValidator`): every row is parsed (`rows.parse_row`) and checked
   against the catalog and the other rows of the file, chunk by chunk. Each problem becomes a
   row error with the row number, column, value and reason.
2. Apply (`apply.apply_rows`): the rows that passed are written with bulk upserts in one
   transaction, together with the job's final counts and its audit entry.

`catalog.services.import_job_run` runs both phases; the admin upload, the Celery task and the
`import_skus` command all go through it.
"""
