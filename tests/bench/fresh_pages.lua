-- wrk: each request asks for a page no request asked for before, so the
-- server cannot answer it from the pages it keeps (shared/api/src/pages.rs)
-- and reads, parses and writes every one, as for the first request after a
-- change. The cursor starts the page after a made-up item id on the first
-- due date (base64url of "+d:2027-01-01|<uuid>", the API's cursor form for
-- sort=due_date); the page is as long as the first page.

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function base64url(data)
  local out = {}
  for i = 1, #data, 3 do
    local a, b, c = data:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = (not b and 2) or (not c and 3) or 4
    for j = 0, chars - 1 do
      local index = math.floor(n / 2 ^ (18 - 6 * j)) % 64
      out[#out + 1] = alphabet:sub(index + 1, index + 1)
    end
  end
  return table.concat(out)
end

local function uuid()
  local r = math.random
  return string.format("%04x%04x-%04x-7%03x-%x%03x-%04x%04x%04x",
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff), r(0, 0xfff), r(8, 11), r(0, 0xfff),
    r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end

function setup(thread)
  thread:set("seed", math.random(1, 2 ^ 30))
end

function init()
  math.randomseed(seed)
end

function request()
  local cursor = base64url("+d:2027-01-01|" .. uuid())
  return wrk.format(nil, wrk.path .. "&cursor=" .. cursor)
end
