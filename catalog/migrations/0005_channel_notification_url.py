from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_alter_channel_code"),
    ]

    operations = [
        migrations.AddField(
            model_name="channel",
            name="notification_url",
            field=models.URLField(
                blank=True,
                help_text=(
                    "Square only: the exact notification URL of the webhook subscription. "
                    "Square signs this URL plus the body, so it must match, scheme and "
                    "trailing slash included."
                ),
                max_length=500,
            ),
        ),
        migrations.AddField(
            model_name="channel",
            name="last_signature_failure",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text=(
                    "When and why the last webhook signature check failed, for setup problems."
                ),
            ),
        ),
    ]
