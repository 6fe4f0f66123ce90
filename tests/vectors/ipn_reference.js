// Reference implementation of the NowPayments IPN signing recipes, run by the Python tests.
//
// stdin:  {"secret": "...", "bodies": ["<raw JSON text>", ...]}
// stdout: [{"stringify": JSON.stringify(JSON.parse(body)),
//           "sorted": <array-preserving recursive sort (official SDK sortObjectDeep)>,
//           "sorted_docs": <docs' Node sortObject: arrays become index-keyed objects>,
//           "sig": <hex HMAC-SHA512 of "sorted">, "sig_docs": <hex HMAC-SHA512 of "sorted_docs">}]
'use strict';
const crypto = require('crypto');

// The recipe printed in the NowPayments docs (Postman collection, IPN section).
function sortObject(obj) {
  return Object.keys(obj).sort().reduce((result, key) => {
    result[key] = (obj[key] && typeof obj[key] === 'object') ? sortObject(obj[key]) : obj[key];
    return result;
  }, {});
}

// The official SDK's sortObjectDeep: recurse into objects, map over arrays, keep array order.
function sortObjectDeep(value) {
  if (Array.isArray(value)) return value.map(sortObjectDeep);
  if (value && typeof value === 'object') {
    return Object.keys(value).sort().reduce((result, key) => {
      result[key] = sortObjectDeep(value[key]);
      return result;
    }, {});
  }
  return value;
}

function hmac(secret, text) {
  return crypto.createHmac('sha512', secret.trim()).update(text).digest('hex');
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  const out = request.bodies.map((body) => {
    const parsed = JSON.parse(body);
    const sorted = JSON.stringify(sortObjectDeep(parsed));
    const isObject = parsed && typeof parsed === 'object' && !Array.isArray(parsed);
    const sortedDocs = isObject ? JSON.stringify(sortObject(parsed)) : null;
    return {
      stringify: JSON.stringify(parsed),
      sorted,
      sorted_docs: sortedDocs,
      sig: hmac(request.secret, sorted),
      sig_docs: sortedDocs === null ? null : hmac(request.secret, sortedDocs),
    };
  });
  // ASCII-only output so that lone surrogates survive the pipe as \uXXXX escapes.
  process.stdout.write(JSON.stringify(out).replace(/[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')));
});
