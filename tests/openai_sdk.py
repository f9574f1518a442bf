"""Drives easel's /v1 and /llmage/v1 with the official `openai` package, unchanged.

Usage: python3 openai_sdk.py BASE_URL API_KEY, against a host that also serves the DashScope
and ModelScope plugins. Prints one line per check; any failed assertion exits non-zero with
the reason.
"""
import sys

import openai

base, key = sys.argv[1], sys.argv[2]

for prefix in ("/v1", "/llmage/v1"):
    client = openai.OpenAI(base_url=base + prefix, api_key=key)

    whole = client.chat.completions.create(
        model="offline/chat", messages=[{"role": "user", "content": "hello there"}]
    )
    assert "hello there" in whole.choices[0].message.content, whole
    assert whole.choices[0].finish_reason == "stop", whole
    assert whole.usage.total_tokens >= 0, whole
    print(prefix, "chat ok:", whole.choices[0].message.content)

    # The SDK's token cap, under its current name, cuts the answer and says so.
    capped = client.chat.completions.create(
        model="offline/chat",
        messages=[{"role": "user", "content": "one two three four five"}],
        max_completion_tokens=2,
    )
    assert capped.choices[0].message.content == "Offline echo: ", capped
    assert capped.choices[0].finish_reason == "length", capped
    assert capped.usage.completion_tokens == 2, capped
    print(prefix, "token cap ok")

    stream = client.chat.completions.create(
        model="offline/chat",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
    )
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "stream me" in "".join(pieces), pieces
    assert finish == "stop", finish
    print(prefix, "stream ok:", "".join(pieces))

    # Both dialects end a stream with the usage chunk when the client asks for it.
    chunks = list(
        client.chat.completions.create(
            model="offline/chat",
            messages=[{"role": "user", "content": "count me"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0, chunks[-1]
    print(prefix, "stream usage ok")

    # A conversation the relay cannot answer as asked is a 400 naming the parameter, and no
    # task: never a 200 without the tool calls or the choices asked for.
    for bad, param in (
        (dict(messages=["hi"]), "messages"),
        (dict(messages=[{"role": "wizard", "content": "x"}]), "messages"),
        (dict(messages=[{"role": "user"}]), "messages"),
        (
            dict(
                messages=[{"role": "user", "content": "x"}],
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            ),
            "tools",
        ),
        (dict(messages=[{"role": "user", "content": "x"}], n=2), "n"),
        (
            dict(
                messages=[{"role": "user", "content": "x"}],
                response_format={"type": "json_object"},
            ),
            "response_format",
        ),
    ):
        try:
            client.chat.completions.create(model="offline/chat", **bad)
            raise AssertionError(f"{bad} must be refused")
        except openai.BadRequestError as error:
            # llmage's errors are `{"error": "…"}`: the sentence names the parameter.
            if prefix == "/v1":
                assert error.body["param"] == param, error.body
            else:
                assert param in error.body, error.body
    print(prefix, "conversation checks ok")

client = openai.OpenAI(base_url=base + "/v1", api_key=key)
models = [m.id for m in client.models.list()]
assert {"offline/chat", "offline/image", "offline/speech"} <= set(models), models
assert client.models.retrieve("offline/chat").id == "offline/chat"
# A bare key one provider serves names the model here as in a request.
assert client.models.retrieve("chat").owned_by == "offline"
try:
    client.models.retrieve("offline/no-such-model")
    raise AssertionError("an unknown model must be a 404")
except openai.NotFoundError as error:
    assert "offline/no-such-model" in str(error)
print("models ok:", models)

image = client.images.generate(model="offline/image", prompt="a red kite", size="64x32", n=2)
assert len(image.data) == 2, image
import urllib.request

with urllib.request.urlopen(image.data[0].url) as response:
    body = response.read()
    assert body[:8] == b"\x89PNG\r\n\x1a\n", body[:8]
    assert int.from_bytes(body[16:20], "big") == 64
print("image url ok:", image.data[0].url)

encoded = client.images.generate(
    model="offline/image", prompt="a red kite", size="32x32", response_format="b64_json"
)
import base64

assert base64.b64decode(encoded.data[0].b64_json)[:4] == b"\x89PNG"
print("image b64 ok")

# An edit sends the image as a file; with a mask it is an inpainting task.
import io
import json

edited = client.images.edit(
    model="offline/image", image=("kite.png", io.BytesIO(body), "image/png"), prompt="bluer", n=2
)
assert len(edited.data) == 2 and edited.data[0].url, edited
masked = client.images.edit(
    model="offline/image",
    image=("kite.png", io.BytesIO(body), "image/png"),
    mask=("mask.png", io.BytesIO(body), "image/png"),
    prompt="a bluer kite",
    response_format="b64_json",
)
assert base64.b64decode(masked.data[0].b64_json)[:4] == b"\x89PNG"
jobs_request = urllib.request.Request(base + "/api/v1/jobs?limit=2", headers={"X-API-Key": key})
with urllib.request.urlopen(jobs_request) as response:
    jobs = json.load(response)["jobs"]
assert [job["capability"] for job in jobs] == ["image.inpaint", "image.edit"], jobs


def random_png(width, height):
    """A PNG of random pixels: it does not compress, so its size is about 3 bytes a pixel."""

    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 1))
        + chunk(b"IEND", b"")
    )


import os
import struct
import zlib

# A vendor's edit model gets the file itself: a photo-sized upload in a list (sent as
# `image[]`), and bytes given without a name or a type (sent as an octet stream).
big = random_png(1024, 1024)
assert len(big) > 3 * 1024 * 1024, len(big)
for image in ([("photo.png", big, "image/png")], big):
    edited = client.images.edit(model="dashscope/qwen-image", image=image, prompt="edit me bluer")
    assert len(edited.data) == 1 and edited.data[0].url, edited
try:
    client.images.edit(model="offline/image", image=("k.png", body, "image/png"), prompt="x", stream=True)
    raise AssertionError("a streamed edit must be refused")
except openai.BadRequestError as error:
    assert error.body["param"] == "stream", error.body
print("image edit ok")

# Speech answers with the audio file itself; a format the model does not let the client
# choose is refused by name rather than ignored.
spoken = client.audio.speech.create(model="offline/speech", voice="alloy", input="hello")
assert spoken.content[:4] == b"RIFF", spoken.content[:16]
with client.audio.speech.with_streaming_response.create(
    model="offline/speech", voice="alloy", input="hello again"
) as streamed:
    assert streamed.headers["content-type"] == "audio/wav", streamed.headers
    assert b"".join(streamed.iter_bytes())[:4] == b"RIFF"
try:
    client.audio.speech.create(model="offline/speech", voice="alloy", input="x", response_format="mp3")
    raise AssertionError("a format the model cannot choose must be refused")
except openai.BadRequestError as error:
    assert error.body["param"] == "response_format", error.body
print("speech ok")

# A task the provider refused is the client's 400, as on the chat route: not a 5xx that the
# SDK would retry (and the vendor bill again).
try:
    client.images.generate(model="offline/image", prompt="a kite", extra_body={"fail": "no kites"})
    raise AssertionError("a refused image must fail")
except openai.BadRequestError as error:
    assert error.body["message"] == "no kites", error.body
    assert error.code == "content_policy_violation", error.body
print("image refusal ok")

# The codes SDK users branch on: an unknown model is OpenAI's 404 `model_not_found` on every
# route, a wrong key `invalid_api_key`; a size the model does not offer names `size`, the
# field the client sent.
for unknown in (
    lambda: client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}]),
    lambda: client.images.generate(model="no-such-model", prompt="x"),
    lambda: client.models.retrieve("no-such-model"),
):
    try:
        unknown()
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as error:
        assert "no-such-model" in str(error) and error.code == "model_not_found", error.body
try:
    openai.OpenAI(base_url=base + "/v1", api_key="not-a-key").models.list()
    raise AssertionError("a wrong key must fail")
except openai.AuthenticationError as error:
    assert error.code == "invalid_api_key", error.body
try:
    client.images.generate(model="offline/image", prompt="x", size="99999x99999")
    raise AssertionError("a size out of range must fail")
except openai.BadRequestError as error:
    assert error.body["param"] == "size" and "99999x99999" in error.body["message"], error.body
print("errors ok")

# llmage lists only names its routes accept: DashScope and ModelScope both serve qwen-image,
# so each is listed once, by full id. A chat model picked from the list answers.
llmage = openai.OpenAI(base_url=base + "/llmage/v1", api_key=key)
listed = list(llmage.models.list())
ids = [m.id for m in listed]
assert len(ids) == len(set(ids)), ids
assert "dashscope/qwen-image" in ids and "modelscope/qwen-image" in ids, ids
chats = [
    m.id
    for m in listed
    if m.owned_by == "dashscope" and "t2t" in (m.model_extra or {}).get("catelogid", [])
]
assert chats, ids
picked = llmage.chat.completions.create(
    model=chats[0], messages=[{"role": "user", "content": "picked from the list"}]
)
assert picked.choices[0].message.content == "picked from the list", picked
print("llmage picked model ok:", chats[0])

# Tool calls, as OpenAI's function-calling guide makes them: a model that declares tools (Qwen,
# through the DashScope plugin) calls one, whole and streamed, in both dialects; the
# assistant's message goes back into the conversation as the SDK returned it, with the tool's
# answer, and the model answers that.
weather = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
for prefix in ("/v1", "/llmage/v1"):
    tools_client = openai.OpenAI(base_url=base + prefix, api_key=key)
    asked = [{"role": "user", "content": "weather in Oslo?"}]
    called = tools_client.chat.completions.create(
        model="dashscope/qwen-plus", messages=asked, tools=[weather], tool_choice="auto"
    )
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls", called
    assert choice.message.content is None, called
    (call,) = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_e2e_0", "function", "weather"), call
    assert json.loads(call.function.arguments) == {"said": "weather in Oslo?"}, call
    assert called.usage.total_tokens == 15, called

    # Streamed, put together by the SDK's own stream helper, as a client does.
    with tools_client.chat.completions.stream(
        model="dashscope/qwen-plus", messages=asked, tools=[weather]
    ) as stream:
        streamed = stream.get_final_completion().choices[0]
    assert streamed.finish_reason == "tool_calls", streamed
    assert streamed.message.content is None, streamed
    (piecewise,) = streamed.message.tool_calls
    assert (piecewise.id, piecewise.function.name) == ("call_e2e_0", "weather"), piecewise
    assert json.loads(piecewise.function.arguments) == {"said": "weather in Oslo?"}, piecewise

    answered = tools_client.chat.completions.create(
        model="dashscope/qwen-plus",
        messages=asked
        + [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}],
        tools=[weather],
    )
    assert answered.choices[0].message.content == "sunny, 21 C", answered
    assert answered.choices[0].finish_reason == "stop", answered
    assert not answered.choices[0].message.tool_calls, answered
    print(prefix, "tool calls ok")

# JSON mode reaches a model that declares it (Qwen); the offline echo refused it above.
json_mode = client.chat.completions.create(
    model="dashscope/qwen-plus",
    messages=[{"role": "user", "content": "answer in JSON"}],
    response_format={"type": "json_object"},
)
assert json_mode.choices[0].message.content == "answer in JSON", json_mode
print("json mode ok")

# The SDKs' current name for the token cap reaches a model that takes it as max_tokens.
capped = client.chat.completions.create(
    model="dashscope/qwen-plus",
    messages=[{"role": "user", "content": "be brief"}],
    max_completion_tokens=7,
)
assert capped.choices[0].message.content == "be brief", capped
# Qwen's context cache shows in the usage as OpenAI's SDK reads it; its null fingerprint is none.
assert capped.usage.prompt_tokens_details.cached_tokens == 2, capped
assert capped.system_fingerprint is None, capped
print("token cap ok")

# A photo in a chat (OpenAI's vision input, an `image_url` data URL of over 9 MiB, just under
# the default JSON limit of 10 MiB) is carried to the vendor whole, within the plugin's memory.
photo = "data:image/png;base64," + base64.b64encode(random_png(1560, 1560)).decode()
seen = client.chat.completions.create(
    model="dashscope/qwen-plus",
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is in this photo?"},
                {"type": "image_url", "image_url": {"url": photo}},
            ],
        }
    ],
)
assert seen.choices[0].finish_reason == "stop", seen
print("photo in a chat ok:", len(photo))
