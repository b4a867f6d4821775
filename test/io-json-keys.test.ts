import t from 'tap';
import { findDuplicateJsonKey } from '../lib/io/json-keys.js';

t.test('unique keys give no finding', async (t) => {
  t.equal(findDuplicateJsonKey('{}'), undefined);
  t.equal(findDuplicateJsonKey('{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}'), undefined);
  t.equal(findDuplicateJsonKey('["a","a",{"x":"a"}]'), undefined, 'repeated string values are not keys');
  t.equal(findDuplicateJsonKey('{"a":"\\"a\\":1","b":"}{,"}'), undefined, 'quotes, braces and commas inside strings are ignored');
  t.equal(findDuplicateJsonKey('{"a\\\\":1,"a":2}'), undefined, 'an escaped backslash ends before the quote');
});

t.test('duplicates are found at every level, with their path', async (t) => {
  t.same(findDuplicateJsonKey('{"a":1,"a":2}'), { key: 'a', path: [] });
  t.same(findDuplicateJsonKey('{"w":{"dtype":"F32","shape":[],"dtype":"F16"}}'), { key: 'dtype', path: ['w'] });
  t.same(findDuplicateJsonKey('{"x":[0,{"k":1},{"k":1,"k":2}]}'), { key: 'k', path: ['x', 2] });
  t.same(findDuplicateJsonKey('{"a":1 , "b" : 2 ,\n "a" : 3}'), { key: 'a', path: [] }, 'whitespace around tokens');
});

t.test('keys are compared after decoding escapes', async (t) => {
  t.same(findDuplicateJsonKey('{"a":1,"\\u0061":2}'), { key: 'a', path: [] });
  t.same(findDuplicateJsonKey('{"\\n":1,"\\u000a":2}'), { key: '\n', path: [] });
});

t.test('deep nesting does not overflow the stack', async (t) => {
  const depth = 200_000;
  const text = '['.repeat(depth) + '{"a":1,"a":2}' + ']'.repeat(depth);
  const found = findDuplicateJsonKey(text);
  t.equal(found?.key, 'a');
  t.equal(found?.path.length, depth);
});
