"""Reference carriers, services and the carriers' own codes, shipped as a data migration.

Only codes whose meaning the carrier fixes belong here: UPS's numeric service codes, FedEx's
service type names, Canada Post's product codes and the carriers' published service names.
Names a shop gives its own rates ("Standard", "Express") differ per shop and per shipping
zone, so they are mapped per channel, in review or in the admin, never here.
"""

from dataclasses import dataclass, field

from django.apps import apps as global_apps
from django.db import transaction

from .carrier_codes import normalize_carrier_code


@dataclass(frozen=True)
class ServiceData:
    code: str
    name: str
    service_level: str
    # Codes that stand for this service on every channel.
    channel_codes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CarrierData:
    code: str
    name: str
    services: tuple[ServiceData, ...]


REFERENCE_CARRIERS = (
    CarrierData(
        "ups",
        "UPS",
        (
            # UPS Rating API service codes: 01 Next Day Air, 02 2nd Day Air, 03 Ground.
            ServiceData("ground", "UPS Ground", "ground", ("03", "UPS Ground")),
            ServiceData("2nd_day_air", "UPS 2nd Day Air", "expedited", ("02", "UPS 2nd Day Air")),
            ServiceData(
                "next_day_air", "UPS Next Day Air", "overnight", ("01", "UPS Next Day Air")
            ),
        ),
    ),
    CarrierData(
        "fedex",
        "FedEx",
        (
            # FedEx Ship API service types, e.g. FEDEX_GROUND (folded like "FedEx Ground").
            ServiceData("ground", "FedEx Ground", "ground", ("FEDEX_GROUND",)),
            ServiceData("2day", "FedEx 2Day", "expedited", ("FEDEX_2_DAY", "FedEx 2Day")),
            ServiceData(
                "standard_overnight",
                "FedEx Standard Overnight",
                "overnight",
                ("STANDARD_OVERNIGHT", "FedEx Standard Overnight"),
            ),
        ),
    ),
    CarrierData(
        "usps",
        "USPS",
        (
            ServiceData(
                "ground_advantage", "USPS Ground Advantage", "ground", ("USPS Ground Advantage",)
            ),
            ServiceData(
                "priority_mail", "USPS Priority Mail", "expedited", ("USPS Priority Mail",)
            ),
            ServiceData(
                "priority_mail_express",
                "USPS Priority Mail Express",
                "overnight",
                ("USPS Priority Mail Express",),
            ),
        ),
    ),
    CarrierData(
        "dhl_express",
        "DHL Express",
        (
            ServiceData(
                "express_worldwide",
                "DHL Express Worldwide",
                "expedited",
                ("DHL Express Worldwide",),
            ),
        ),
    ),
    CarrierData(
        "royal_mail",
        "Royal Mail",
        (
            ServiceData(
                "tracked_48", "Royal Mail Tracked 48", "ground", ("Royal Mail Tracked 48",)
            ),
            ServiceData(
                "tracked_24", "Royal Mail Tracked 24", "expedited", ("Royal Mail Tracked 24",)
            ),
        ),
    ),
    CarrierData(
        "canada_post",
        "Canada Post",
        (
            # Canada Post's domestic product codes.
            ServiceData("regular_parcel", "Canada Post Regular Parcel", "ground", ("DOM.RP",)),
            ServiceData(
                "expedited_parcel",
                "Canada Post Expedited Parcel",
                "expedited",
                ("DOM.EP", "Canada Post Expedited Parcel"),
            ),
            ServiceData("xpresspost", "Canada Post Xpresspost", "expedited", ("DOM.XP",)),
            ServiceData("priority", "Canada Post Priority", "overnight", ("DOM.PC",)),
        ),
    ),
    CarrierData(
        "japan_post",
        "Japan Post",
        (
            ServiceData(
                "yu_pack", "Japan Post Yu-Pack", "ground", ("Japan Post Yu-Pack", "ゆうパック")
            ),
            ServiceData("ems", "Japan Post EMS", "expedited", ("Japan Post EMS",)),
        ),
    ),
    CarrierData(
        "yamato",
        "Yamato Transport",
        (
            ServiceData(
                "ta_q_bin",
                "Yamato TA-Q-BIN",
                "ground",
                ("Yamato TA-Q-BIN", "ヤマト運輸 宅急便"),
            ),
        ),
    ),
    CarrierData(
        "dpd",
        "DPD",
        (
            ServiceData("classic", "DPD Classic", "ground", ("DPD Classic",)),
            ServiceData("express", "DPD Express", "expedited", ("DPD Express",)),
        ),
    ),
    CarrierData(
        "store",
        "In-store pickup",
        # Shops name their pickup rates themselves, so there are no codes for every channel.
        (ServiceData("pickup", "In-store pickup", "pickup"),),
    ),
)


def carrier_reference_load(*, apps=global_apps) -> dict[str, int]:
    """Create the reference carriers, services and any-channel code mappings that are missing.

    Existing rows are left as they are, so an ops manager's edits survive, and a code
    already mapped to another service is skipped, not changed. `apps` is a migration's app
    registry or the live one. The folded code is set here because migration models do not
    have CarrierCodeMapping.save(). Returns how many rows of each kind were created.
    """
    carrier_model = apps.get_model("orders", "Carrier")
    service_model = apps.get_model("orders", "CarrierService")
    mapping_model = apps.get_model("orders", "CarrierCodeMapping")
    created = {"carriers": 0, "services": 0, "mappings": 0}

    with transaction.atomic():
        for carrier_data in REFERENCE_CARRIERS:
            carrier, new = carrier_model.objects.get_or_create(
                code=carrier_data.code, defaults={"name": carrier_data.name}
            )
            created["carriers"] += new
            for service_data in carrier_data.services:
                service, new = service_model.objects.get_or_create(
                    carrier=carrier,
                    code=service_data.code,
                    defaults={
                        "name": service_data.name,
                        "service_level": service_data.service_level,
                    },
                )
                created["services"] += new
                for code in service_data.channel_codes:
                    _, new = mapping_model.objects.get_or_create(
                        channel=None,
                        destination_country="",
                        normalized_code=normalize_carrier_code(code),
                        defaults={"code": code, "service": service},
                    )
                    created["mappings"] += new
    return created
