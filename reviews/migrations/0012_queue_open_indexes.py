"""Partial indexes for the review queue: the open items in each queue order, and the decided items
of a kind in decision order.

NOTE: a plain CREATE INDEX blocks writes to reviews_reviewitem while it builds. The three
indexes over open items are small, but the decided-items one covers every decided item, so on a
large table run this migration in a quiet period."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('orders', '0013_fulfilment_roles'),
        ('reviews', '0011_axes_unlock_role'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name='reviewitem',
            index=models.Index(condition=models.Q(('status', 'open')), fields=['created_at', 'id'], name='review_item_open_created'),
        ),
        migrations.AddIndex(
            model_name='reviewitem',
            index=models.Index(condition=models.Q(('status', 'open')), fields=['kind', 'created_at', 'id'], include=('due_at',), name='review_item_open_kind'),
        ),
        migrations.AddIndex(
            model_name='reviewitem',
            index=models.Index(condition=models.Q(('status', 'open')), fields=['due_at', 'created_at', 'id'], name='review_item_open_by_due'),
        ),
        migrations.AddIndex(
            model_name='reviewitem',
            index=models.Index(condition=models.Q(('known_answer__isnull', True), ('status__in', ['accepted', 'rejected'])), fields=['kind', 'action_code', '-decided_at', '-id'], name='review_item_decided_similar'),
        ),
    ]
