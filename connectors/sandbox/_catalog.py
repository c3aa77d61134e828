"""Fixed word lists and the product catalogue the synthetic data set draws from (no I/O)."""

from __future__ import annotations

FIRST_NAMES = (
    "Ada", "Alan", "Alice", "Amara", "Ana", "Arjun", "Ben", "Bianca", "Carlos", "Chen", "Chloe",
    "Daniel", "Dara", "Elena", "Emma", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan",
    "Jade", "James", "Jonas", "Julia", "Kai", "Kenji", "Lars", "Lea", "Leo", "Lina", "Lucas",
    "Maya", "Mia", "Mohammed", "Nadia", "Noah", "Nora", "Olga", "Omar", "Pablo", "Priya", "Rafael",
    "Rosa", "Sam", "Sara", "Sofia", "Tom", "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zoe",
)  # fmt: skip

LAST_NAMES = (
    "Adams", "Ahmed", "Almeida", "Berg", "Brown", "Costa", "Dubois", "Fischer", "Garcia", "Gupta",
    "Hansen", "Ivanova", "Jensen", "Kim", "Kowalski", "Lee", "Lopez", "Martin", "Meyer", "Moreau",
    "Murphy", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen", "Patel", "Perez", "Rossi", "Santos",
    "Schmidt", "Silva", "Singh", "Smith", "Suzuki", "Tanaka", "Taylor", "Wang", "Weber", "Wilson",
)  # fmt: skip

# (city, ISO country code, E.164 calling code)
CITIES = (
    ("Berlin", "DE", "49"), ("Hamburg", "DE", "49"), ("Munich", "DE", "49"), ("Paris", "FR", "33"),
    ("Lyon", "FR", "33"), ("London", "GB", "44"), ("Manchester", "GB", "44"), ("Madrid", "ES", "34"),
    ("Barcelona", "ES", "34"), ("Milan", "IT", "39"), ("Amsterdam", "NL", "31"),
    ("Copenhagen", "DK", "45"), ("Stockholm", "SE", "46"), ("Warsaw", "PL", "48"),
    ("New York", "US", "1"), ("Chicago", "US", "1"), ("Austin", "US", "1"), ("Seattle", "US", "1"),
    ("Toronto", "CA", "1"), ("Sydney", "AU", "61"), ("Tokyo", "JP", "81"), ("Lisbon", "PT", "351"),
)  # fmt: skip

# Reserved example domains only (RFC 2606): never a real mailbox.
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "shop.example")

# Malformed addresses used for the "invalid email" data-quality cases.
INVALID_EMAIL_SHAPES = (
    "{first}.{last}@",  # no domain
    "{first}.{last}.example.com",  # no @
    "{first} {last}@example.com",  # space inside
    "{first}@@example.com",  # double @
    "{first}.{last}@example",  # no top-level domain
    "",  # missing
)

CATEGORIES = ("shoes", "jackets", "shirts", "bags", "accessories", "outdoor", "home")

_PRODUCT_WORDS = (
    ("Trail", "Runner"), ("Summit", "Jacket"), ("Linen", "Shirt"), ("Canvas", "Tote"),
    ("Wool", "Beanie"), ("Storm", "Parka"), ("Court", "Sneaker"), ("Merino", "Sweater"),
    ("Leather", "Backpack"), ("Alpine", "Tent"), ("Cotton", "Tee"), ("Rain", "Boot"),
    ("Down", "Vest"), ("Travel", "Duffel"), ("Silk", "Scarf"), ("Ceramic", "Mug"),
    ("Oak", "Cutting Board"), ("Hiking", "Sock"), ("Denim", "Jacket"), ("Suede", "Loafer"),
)  # fmt: skip
_VARIANTS = ("Classic", "Pro", "Lite", "Eco", "Max")
_CATEGORY_OF = {
    "Runner": "shoes", "Sneaker": "shoes", "Boot": "shoes", "Loafer": "shoes", "Jacket": "jackets",
    "Parka": "jackets", "Vest": "jackets", "Shirt": "shirts", "Tee": "shirts", "Sweater": "shirts",
    "Tote": "bags", "Backpack": "bags", "Duffel": "bags", "Beanie": "accessories",
    "Scarf": "accessories", "Sock": "accessories", "Tent": "outdoor", "Mug": "home",
    "Cutting Board": "home",
}  # fmt: skip


def product_names() -> list[tuple[str, str, str]]:
    """(name, slug, category) of every catalogue product, in a fixed order."""
    out = []
    for variant in _VARIANTS:
        for a, b in _PRODUCT_WORDS:
            name = f"{a} {b} {variant}"
            out.append((name, name.lower().replace(" ", "-"), _CATEGORY_OF[b]))
    return out
