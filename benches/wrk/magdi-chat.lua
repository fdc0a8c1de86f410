-- Magdi's /chat as its clients send it: multipart/form-data with a Bearer
-- token. BENCH_CONVERSATIONS names a file of "token conversation_id" lines;
-- requests rotate through them. BENCH_STREAM=1 asks for Server-Sent Events.
local requests = {}
local next_index = 0

function init(args)
  local stream = os.getenv("BENCH_STREAM") == "1"
  local category = os.getenv("BENCH_CATEGORY") or "test_generation"
  local boundary = "magdibenchboundary7e3f"
  local file = assert(io.open(os.getenv("BENCH_CONVERSATIONS"), "r"))
  for line in file:lines() do
    local token, id = line:match("^(%S+) (%S+)$")
    if token then
      local function field(name, value)
        return "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. name ..
          "\"\r\n\r\n" .. value .. "\r\n"
      end
      local body = field("conversation_id", id) .. field("category", category) ..
        field("message", "Write one pytest test for add(a, b).") .. "--" .. boundary .. "--\r\n"
      local headers = {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "multipart/form-data; boundary=" .. boundary,
      }
      if stream then headers["Accept"] = "text/event-stream" end
      table.insert(requests, wrk.format("POST", "/chat", headers, body))
    end
  end
  file:close()
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
