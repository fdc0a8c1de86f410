-- A plain GET of the URL's path, prepared once.
local prepared = nil

function request()
  if prepared == nil then
    prepared = wrk.format("GET", wrk.path)
  end
  return prepared
end
