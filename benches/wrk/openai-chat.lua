-- One Chat Completions request, as a client of an OpenAI-compatible server
-- sends it. BENCH_STREAM=1 asks for a stream with a usage chunk; BENCH_AUTH is
-- the Authorization header (LiteLLM's master key).
local stream = os.getenv("BENCH_STREAM") == "1"
local model = os.getenv("BENCH_MODEL") or "fake-model"
local body
if stream then
  body = '{"model":"' .. model .. '","stream":true,"stream_options":{"include_usage":true},' ..
    '"messages":[{"role":"user","content":"Write one pytest test for add(a, b)."}]}'
else
  body = '{"model":"' .. model .. '","stream":false,' ..
    '"messages":[{"role":"user","content":"Write one pytest test for add(a, b)."}]}'
end
local headers = { ["Content-Type"] = "application/json", ["Authorization"] = os.getenv("BENCH_AUTH") or "Bearer bench" }
local prepared = nil

function request()
  if prepared == nil then
    prepared = wrk.format("POST", wrk.path, headers, body)
  end
  return prepared
end
