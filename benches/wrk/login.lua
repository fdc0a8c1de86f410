-- POST /login with the right password for BENCH_EMAIL.
local body = '{"email":"' .. (os.getenv("BENCH_EMAIL") or "bench0@example.com") ..
  '","password":"' .. (os.getenv("BENCH_PASSWORD") or "") .. '"}'
local prepared = nil

function request()
  if prepared == nil then
    prepared = wrk.format("POST", "/login", { ["Content-Type"] = "application/json" }, body)
  end
  return prepared
end
