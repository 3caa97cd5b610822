#!/usr/bin/env python3
"""The official openai package, unchanged, against a live `mlxcel serve` (run by tests/serve.rs,
which starts the server with --api-key, --parallel 1 --max-queue 0 and --ctx-size 256).

    python3 tests/serve_openai.py --base-url http://127.0.0.1:PORT/v1 --api-key KEY --model ID
"""
import argparse
import sys

import openai
from openai import OpenAI


def expect_error(kind, call, says=None):
    try:
        call()
    except kind as error:
        if says is not None and says not in str(error):
            raise AssertionError(f"{kind.__name__} should mention {says!r}: {error}")
        return error
    raise AssertionError(f"expected {kind.__name__}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    # No retries: a 429 or 5xx must surface here, not be retried away.
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=60)
    model = args.model
    messages = [{"role": "user", "content": "Hello there"}]

    assert [m.id for m in client.models.list().data] == [model]

    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0)
    text = chat.choices[0].message.content
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.choices[0].finish_reason == "length", chat.choices[0].finish_reason
    assert chat.usage.completion_tokens == 8
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + 8

    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text, (streamed, text)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].choices == []

    with_logprobs = client.chat.completions.create(model=model, messages=messages, max_completion_tokens=3,
                                                   temperature=0, logprobs=True, top_logprobs=2)
    content = with_logprobs.choices[0].logprobs.content
    assert len(content) == 3 and all(len(t.top_logprobs) == 2 for t in content)
    assert all(t.top_logprobs[0].logprob == t.logprob for t in content)

    completion = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=6, temperature=0)
    assert completion.object == "text_completion" and completion.usage.completion_tokens == 6
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="The quick brown fox", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == completion.choices[0].text

    response = client.responses.create(model=model, input="Hello there", instructions="Be brief.",
                                       max_output_tokens=6, temperature=0)
    assert response.output_text and response.usage.output_tokens == 6
    events = list(client.responses.create(model=model, input="Hello there", instructions="Be brief.",
                                          max_output_tokens=6, temperature=0, stream=True))
    assert events[0].type == "response.created"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == response.output_text, (deltas, response.output_text)

    expect_error(openai.NotFoundError, lambda: client.chat.completions.create(
        model="gpt-4o", messages=messages, max_tokens=2), says="gpt-4o")
    expect_error(openai.BadRequestError, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=2, n=2), says="n")
    expect_error(openai.BadRequestError, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=1000), says="context")
    expect_error(openai.BadRequestError, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=2,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]), says="tools")
    wrong_key = OpenAI(base_url=args.base_url, api_key="wrong", max_retries=0)
    expect_error(openai.AuthenticationError, lambda: wrong_key.models.list())

    # One slot, no queue: while a stream holds the slot, another request is refused with 429.
    holding = client.chat.completions.create(model=model, messages=messages, max_tokens=200, temperature=0,
                                             stream=True)
    next(iter(holding))
    expect_error(openai.RateLimitError, lambda: client.chat.completions.create(
        model=model, messages=messages, max_tokens=2))
    holding.close()
    # The closed stream's slot is freed within a step; the next request gets it.
    for attempt in range(100):
        try:
            client.chat.completions.create(model=model, messages=messages, max_tokens=2)
            break
        except openai.RateLimitError:
            import time
            time.sleep(0.05)
    else:
        raise AssertionError("the slot of the closed stream was never freed")
    print("openai client: all checks passed")


if __name__ == "__main__":
    sys.exit(main())
