"""Model instances from rows of hand-written SQL, and a plain multi-row INSERT, for the order
processing path.

Building a query with the ORM costs about a thousand Python calls before it reaches the
database, more than the round trip itself. The hottest reads of order processing are written
as SQL once, and their rows become model instances here, through the same database
converters (JSON, decimals, dates) a QuerySet applies. So the instances compare equal to the
ones the ORM would have returned.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from django.db import connections
from django.db.models import AutoField, Model
from django.db.models.sql import InsertQuery
from django.db.models.sql.compiler import SQLInsertCompiler

ModelT = TypeVar("ModelT", bound=Model)
Converter = tuple[Callable[..., Any], Any]


def column_list(model: type[Model], alias: str) -> str:
    """Return "alias"."column", ... for every concrete field of the model, in field order."""
    return ", ".join(f'"{alias}"."{field.column}"' for field in model._meta.concrete_fields)


def instance_from_row(model: type[ModelT], row: Sequence[Any], *, using: str = "default") -> ModelT:
    """Build a model instance from a row holding its concrete fields in field order.

    The row must be read with `column_list(model, ...)` on the connection `using`.
    """
    connection = connections[using]
    values = list(row)
    for index, converters in _converters(model, connection):
        for convert, expression in converters:
            values[index] = convert(values[index], expression, connection)
    return model.from_db(using, _attnames(model), values)


@functools.cache
def _attnames(model: type[Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


# Keyed by the connection object, which is one per thread and alias and lives as long as it.
@functools.cache
def _converters(model: type[Model], connection: Any) -> list[tuple[int, list[Converter]]]:
    # What SQLCompiler.get_converters collects for a plain column of the field.
    found = []
    for index, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        functions = [
            *connection.ops.get_db_converters(column),
            *column.get_db_converters(connection),
        ]
        if functions:
            found.append((index, [(function, column) for function in functions]))
    return found


def instances_insert(objs: Sequence[ModelT], *, using: str = "default") -> list[ModelT]:
    """Insert new instances of one model with one INSERT ... VALUES and set their primary keys.

    What bulk_create does, except that on PostgreSQL it sends the rows as VALUES. Django 5.2's
    bulk_create sends two or more rows as UNNEST of one array per column, and psycopg quotes
    every array element in Python. For an order's two lines and three timeline events, that
    quoting cost more CPU than the rest of both inserts. Other databases use bulk_create.
    """
    objs = list(objs)
    connection = connections[using]
    if not objs or connection.vendor != "postgresql":
        return type(objs[0])._default_manager.db_manager(using).bulk_create(objs) if objs else []
    opts = type(objs[0])._meta
    for obj in objs:
        if obj.pk is None:
            obj.pk = opts.pk.get_pk_value_on_save(obj)
        obj._prepare_related_fields_for_save(operation_name="instances_insert")
    fields = [
        field
        for field in opts.concrete_fields
        if not field.generated and not isinstance(field, AutoField)
    ]
    query = InsertQuery(type(objs[0]))
    query.insert_values(fields, objs)
    # The generic compiler, not PostgreSQL's, whose assemble_as_sql picks UNNEST.
    returned = SQLInsertCompiler(query, connection, using).execute_sql(opts.db_returning_fields)
    for obj, values in zip(objs, returned, strict=True):
        for value, field in zip(values, opts.db_returning_fields, strict=True):
            setattr(obj, field.attname, value)
        obj._state.adding = False
        obj._state.db = using
    return objs
