"""Block Kit checks (pure): the limits a message is most likely to break, with error details
that imitate Slack's ("... [json-pointer:/blocks/0/text]")."""

from __future__ import annotations

from typing import Any

MAX_BLOCKS = 50
MAX_VIEW_BLOCKS = 100  # modals and the Home tab

_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)
_ELEMENT_TYPES = frozenset(
    {
        "button",
        "channels_select",
        "checkboxes",
        "conversations_select",
        "datepicker",
        "datetimepicker",
        "email_text_input",
        "external_select",
        "file_input",
        "image",
        "multi_channels_select",
        "multi_conversations_select",
        "multi_external_select",
        "multi_static_select",
        "multi_users_select",
        "number_input",
        "overflow",
        "plain_text_input",
        "radio_buttons",
        "rich_text_input",
        "static_select",
        "timepicker",
        "url_text_input",
        "users_select",
        "workflow_button",
    }
)


class _BlockChecker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def string(self, value: Any, pointer: str, limit: int, *, required: bool = False) -> None:
        if value is None:
            if required:
                self.fail("missing required field", pointer)
            return
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", pointer)

    def text_object(
        self, value: Any, pointer: str, limit: int, *, plain_only: bool = False
    ) -> None:
        if not isinstance(value, dict):
            self.fail("must be a text object", pointer)
            return
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if value.get("type") not in allowed:
            self.fail("must be a valid enum value", f"{pointer}/type")
        text = value.get("text")
        if not isinstance(text, str):
            self.fail("missing required field", f"{pointer}/text")
        elif not text:
            self.fail("must be more than 0 characters", f"{pointer}/text")
        elif len(text) > limit:
            self.fail(f"must be less than {limit + 1} characters", f"{pointer}/text")

    def items(self, value: Any, pointer: str, limit: int) -> list[Any]:
        if not isinstance(value, list) or not value:
            self.fail("must be a non-empty array", pointer)
            return []
        if len(value) > limit:
            self.fail(f"no more than {limit} items allowed", pointer)
        return value

    def element(self, element: Any, pointer: str, action_ids: set[str]) -> None:
        if not isinstance(element, dict):
            self.fail("must be an object", pointer)
            return
        kind = element.get("type")
        if kind not in _ELEMENT_TYPES:
            self.fail(f"unsupported type: {kind}", f"{pointer}/type")
            return
        action_id = element.get("action_id")
        self.string(action_id, f"{pointer}/action_id", 255)
        if isinstance(action_id, str):
            if action_id in action_ids:
                self.fail("action_id already exists in this block", f"{pointer}/action_id")
            action_ids.add(action_id)
        if kind == "button":
            if "text" not in element:
                self.fail("missing required field", f"{pointer}/text")
            else:
                self.text_object(element["text"], f"{pointer}/text", 75, plain_only=True)
            self.string(element.get("url"), f"{pointer}/url", 3000)
            self.string(element.get("value"), f"{pointer}/value", 2000)
            if element.get("style") not in (None, "primary", "danger"):
                self.fail("must be a valid enum value", f"{pointer}/style")
        elif kind == "image":
            self.image(element, pointer)

    def image(self, image: dict[str, Any], pointer: str) -> None:
        if "image_url" not in image and "slack_file" not in image:
            self.fail("must provide either image_url or slack_file", pointer)
        self.string(image.get("image_url"), f"{pointer}/image_url", 3000)
        self.string(image.get("alt_text"), f"{pointer}/alt_text", 2000, required=True)

    def block(self, block: dict[str, Any], pointer: str) -> None:
        kind = block["type"]
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail("must provide either text or fields", pointer)
            if "text" in block:
                self.text_object(block["text"], f"{pointer}/text", 3000)
            if "fields" in block:
                for i, item in enumerate(self.items(block["fields"], f"{pointer}/fields", 10)):
                    self.text_object(item, f"{pointer}/fields/{i}", 2000)
            if "accessory" in block:
                self.element(block["accessory"], f"{pointer}/accessory", action_ids)
        elif kind == "header":
            self.text_object(block.get("text"), f"{pointer}/text", 150, plain_only=True)
        elif kind == "context":
            for i, item in enumerate(self.items(block.get("elements"), f"{pointer}/elements", 10)):
                item_pointer = f"{pointer}/elements/{i}"
                if isinstance(item, dict) and item.get("type") == "image":
                    self.image(item, item_pointer)
                else:
                    self.text_object(item, item_pointer, 3000)
        elif kind == "actions":
            for i, item in enumerate(self.items(block.get("elements"), f"{pointer}/elements", 25)):
                self.element(item, f"{pointer}/elements/{i}", action_ids)
        elif kind == "image":
            self.image(block, pointer)
            if "title" in block:
                self.text_object(block["title"], f"{pointer}/title", 2000, plain_only=True)
        elif kind == "markdown":
            self.string(block.get("text"), f"{pointer}/text", 12_000, required=True)
        elif kind == "input":
            self.text_object(block.get("label"), f"{pointer}/label", 2000, plain_only=True)
            if "hint" in block:
                self.text_object(block["hint"], f"{pointer}/hint", 2000, plain_only=True)
            if not isinstance(block.get("element"), dict):
                self.fail("missing required field", f"{pointer}/element")
            else:
                self.element(block["element"], f"{pointer}/element", action_ids)
                max_length = block["element"].get("max_length")
                if max_length is not None and not (
                    isinstance(max_length, int) and 0 < max_length <= 3000
                ):
                    self.fail("must be at most 3000", f"{pointer}/element/max_length")
        elif kind == "rich_text":
            self.items(block.get("elements"), f"{pointer}/elements", 1_000)


def block_errors(blocks: Any, *, max_blocks: int = MAX_BLOCKS) -> list[str]:
    """Return Slack-style error details for ``blocks`` (an empty list when Slack would accept).

    Checks the limits a message is most likely to break: 50 blocks, section text 3,000,
    header 150, button text 75 and url 3,000, 10 context elements, 25 actions elements,
    ``block_id``/``action_id`` 255, duplicate ids, unknown block or element types.
    """
    checker = _BlockChecker()
    if not isinstance(blocks, list):
        checker.fail("must be an array", "/blocks")
        return checker.errors
    if len(blocks) > max_blocks:
        checker.fail(f"no more than {max_blocks} items allowed", "/blocks")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        pointer = f"/blocks/{i}"
        if not isinstance(block, dict):
            checker.fail("must be an object", pointer)
            continue
        if block.get("type") not in _BLOCK_TYPES:
            checker.fail(f"unsupported type: {block.get('type')}", f"{pointer}/type")
            continue
        block_id = block.get("block_id")
        checker.string(block_id, f"{pointer}/block_id", 255)
        if isinstance(block_id, str):
            if block_id in block_ids:
                checker.fail("duplicate block_id", f"{pointer}/block_id")
            block_ids.add(block_id)
        checker.block(block, pointer)
    return checker.errors
