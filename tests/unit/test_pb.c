/* Tests for the protobuf encoder (plugin/mprof_pb.c).
 *
 * Expected bytes are the encodings given in the protocol buffers documentation ("Encoding") or
 * worked out from its rules by hand. */
#include "mprof_pb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define EXPECT_BYTES(buf, ...)                                                                     \
  do {                                                                                             \
    static const uint8_t expected_[] = {__VA_ARGS__};                                              \
    assert_false((buf)->failed);                                                                   \
    assert_int_equal((buf)->len, sizeof expected_);                                                \
    assert_memory_equal((buf)->data, expected_, sizeof expected_);                                 \
  } while (0)

static void test_varint_encodes_small_values_in_one_byte(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_varint(&b, 0);
  mprof__pb_varint(&b, 1);
  mprof__pb_varint(&b, 127);
  EXPECT_BYTES(&b, 0x00, 0x01, 0x7f);
  mprof__pb_free(&b);
}

static void test_varint_encodes_300_as_two_bytes(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_varint(&b, 300);
  EXPECT_BYTES(&b, 0xac, 0x02);
  mprof__pb_free(&b);
}

static void test_varint_encodes_128_with_a_continuation_byte(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_varint(&b, 128);
  mprof__pb_varint(&b, 16383);
  mprof__pb_varint(&b, 16384);
  EXPECT_BYTES(&b, 0x80, 0x01, 0xff, 0x7f, 0x80, 0x80, 0x01);
  mprof__pb_free(&b);
}

static void test_varint_encodes_uint64_max_in_ten_bytes(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_varint(&b, UINT64_MAX);
  EXPECT_BYTES(&b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
  mprof__pb_free(&b);
}

static void test_varint_size_matches_bytes_written(void** state) {
  (void)state;
  static const uint64_t values[] = {0,          1,          127,        128,
                                    300,        16383,      16384,      (1ull << 35) - 1,
                                    1ull << 35, 1ull << 63, UINT64_MAX, 0x7fffffff};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
    mprof__pb_varint(&b, values[i]);
    assert_int_equal(b.len, mprof__pb_varint_size(values[i]));
    mprof__pb_free(&b);
  }
  assert_int_equal(mprof__pb_varint_size(0), 1);
  assert_int_equal(mprof__pb_varint_size(UINT64_MAX), MPROF_PB_VARINT_MAX);
}

static void test_tag_combines_field_number_and_wire_type(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_tag(&b, 1, MPROF_PB_VARINT);
  mprof__pb_tag(&b, 2, MPROF_PB_LEN);
  mprof__pb_tag(&b, 15, MPROF_PB_FIXED64);
  mprof__pb_tag(&b, 16, MPROF_PB_VARINT); /* first field number needing a two-byte tag */
  mprof__pb_tag(&b, 3, MPROF_PB_FIXED32);
  EXPECT_BYTES(&b, 0x08, 0x12, 0x79, 0x80, 0x01, 0x1d);
  mprof__pb_free(&b);
}

static void test_uint64_field_150_encodes_as_08_96_01(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_uint64(&b, 1, 150);
  EXPECT_BYTES(&b, 0x08, 0x96, 0x01);
  mprof__pb_free(&b);
}

static void test_int64_minus_one_takes_ten_bytes(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_int64(&b, 1, -1);
  EXPECT_BYTES(&b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
  mprof__pb_free(&b);
}

static void test_zero_and_bool_fields_are_written(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_int64(&b, 9, 0);
  mprof__pb_bool(&b, 7, true);
  mprof__pb_bool(&b, 8, false);
  EXPECT_BYTES(&b, 0x48, 0x00, 0x38, 0x01, 0x40, 0x00);
  mprof__pb_free(&b);
}

static void test_string_field_testing_encodes_with_length_prefix(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_string(&b, 2, "testing");
  EXPECT_BYTES(&b, 0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g');
  mprof__pb_free(&b);
}

static void test_empty_string_field_has_zero_length(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_string(&b, 6, "");
  EXPECT_BYTES(&b, 0x32, 0x00);
  mprof__pb_free(&b);
}

static void test_bytes_field_copies_binary_data(void** state) {
  (void)state;
  static const uint8_t data[] = {0x00, 0xff, 0x10};
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_bytes(&b, 6, data, sizeof data);
  EXPECT_BYTES(&b, 0x32, 0x03, 0x00, 0xff, 0x10);
  mprof__pb_free(&b);
}

static void test_packed_uint64_matches_documented_example(void** state) {
  (void)state;
  static const uint64_t v[] = {3, 270, 86942};
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_packed_uint64(&b, 4, v, 3);
  EXPECT_BYTES(&b, 0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05);
  mprof__pb_free(&b);
}

static void test_packed_int64_encodes_negative_values_in_ten_bytes(void** state) {
  (void)state;
  static const int64_t v[] = {-1, 1};
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_packed_int64(&b, 2, v, 2);
  EXPECT_BYTES(&b, 0x12, 0x0b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01);
  mprof__pb_free(&b);
}

static void test_packed_field_with_no_elements_writes_nothing(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_packed_uint64(&b, 1, NULL, 0);
  mprof__pb_packed_int64(&b, 2, NULL, 0);
  assert_false(b.failed);
  assert_int_equal(b.len, 0);
  mprof__pb_free(&b);
}

static void test_nested_message_matches_documented_example(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  size_t tok = mprof__pb_begin(&b, 3);
  mprof__pb_uint64(&b, 1, 150);
  mprof__pb_end(&b, tok);
  EXPECT_BYTES(&b, 0x1a, 0x03, 0x08, 0x96, 0x01);
  mprof__pb_free(&b);
}

static void test_empty_nested_message_has_zero_length(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_uint64(&b, 1, 1);
  size_t tok = mprof__pb_begin(&b, 2);
  mprof__pb_end(&b, tok);
  mprof__pb_uint64(&b, 3, 3);
  EXPECT_BYTES(&b, 0x08, 0x01, 0x12, 0x00, 0x18, 0x03);
  mprof__pb_free(&b);
}

static void test_nested_messages_nest_two_levels(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  size_t outer = mprof__pb_begin(&b, 2); /* Sample */
  size_t ids = mprof__pb_begin(&b, 1);   /* packed location_id {1, 2} */
  mprof__pb_varint(&b, 1);
  mprof__pb_varint(&b, 2);
  mprof__pb_end(&b, ids);
  size_t label = mprof__pb_begin(&b, 3); /* Label {key: 4, num: 300} */
  mprof__pb_int64(&b, 1, 4);
  mprof__pb_int64(&b, 3, 300);
  mprof__pb_end(&b, label);
  mprof__pb_end(&b, outer);
  EXPECT_BYTES(&b, 0x12, 0x0b, 0x0a, 0x02, 0x01, 0x02, 0x1a, 0x05, 0x08, 0x04, 0x18, 0xac, 0x02);
  mprof__pb_free(&b);
}

static void test_nested_message_longer_than_127_bytes_gets_two_byte_length(void** state) {
  (void)state;
  uint8_t body[200];
  for (size_t i = 0; i < sizeof body; i++)
    body[i] = (uint8_t)i;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  size_t tok = mprof__pb_begin(&b, 1);
  mprof__pb_raw(&b, body, sizeof body);
  mprof__pb_end(&b, tok);
  mprof__pb_uint64(&b, 2, 5);
  assert_false(b.failed);
  assert_int_equal(b.len, 3 + sizeof body + 2);
  assert_int_equal(b.data[0], 0x0a);
  assert_int_equal(b.data[1], 0xc8); /* 200 = 0x48 | 0x80, then 1 */
  assert_int_equal(b.data[2], 0x01);
  assert_memory_equal(b.data + 3, body, sizeof body);
  assert_int_equal(b.data[203], 0x10);
  assert_int_equal(b.data[204], 0x05);
  mprof__pb_free(&b);
}

static void test_buffer_grows_and_keeps_earlier_bytes(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  const uint64_t n = 200000; /* several doublings, past the small-block size of meta memory */
  for (uint64_t i = 0; i < n; i++)
    mprof__pb_varint(&b, i);
  assert_false(b.failed);
  size_t expected = 0;
  for (uint64_t i = 0; i < n; i++)
    expected += mprof__pb_varint_size(i);
  assert_int_equal(b.len, expected);
  /* Decode everything back. */
  size_t pos = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t byte;
    do {
      byte = b.data[pos++];
      v |= (uint64_t)(byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    assert_int_equal(v, i);
  }
  assert_int_equal(pos, b.len);
  mprof__pb_free(&b);
  assert_null(b.data);
  assert_int_equal(b.cap, 0);
}

static void test_clear_keeps_memory_and_restarts_at_zero(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_uint64(&b, 1, 150);
  uint8_t* data = b.data;
  mprof__pb_clear(&b);
  assert_int_equal(b.len, 0);
  mprof__pb_varint(&b, 300);
  assert_ptr_equal(b.data, data);
  EXPECT_BYTES(&b, 0xac, 0x02);
  mprof__pb_free(&b);
}

static void test_out_of_memory_sets_failed_and_drops_later_appends(void** state) {
  (void)state;
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  mprof__pb_uint64(&b, 1, 150);
  size_t len = b.len;
  /* No system can map this much; the request fails without touching the contents. */
  assert_false(mprof__pb_reserve(&b, SIZE_MAX / 4));
  assert_true(b.failed);
  mprof__pb_varint(&b, 1);
  mprof__pb_string(&b, 2, "dropped");
  size_t tok = mprof__pb_begin(&b, 3);
  mprof__pb_uint64(&b, 1, 1);
  mprof__pb_end(&b, tok);
  assert_int_equal(b.len, len);
  assert_true(b.failed);
  mprof__pb_clear(&b);
  assert_true(b.failed); /* sticky until freed */
  assert_false(mprof__pb_reserve(&b, 1));
  mprof__pb_free(&b);
  assert_false(b.failed);
  mprof__pb_varint(&b, 300);
  EXPECT_BYTES(&b, 0xac, 0x02);
  mprof__pb_free(&b);
}

static void test_out_of_memory_inside_nested_message_is_reported(void** state) {
  (void)state;
  static const uint8_t small[1] = {0};
  mprof_pb_buf_t b = MPROF_PB_BUF_INIT;
  size_t tok = mprof__pb_begin(&b, 1);
  /* The length alone makes the reservation fail, so the data is never read past its end. */
  mprof__pb_bytes(&b, 2, small, SIZE_MAX - 8);
  mprof__pb_end(&b, tok);
  assert_true(b.failed);
  mprof__pb_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_varint_encodes_small_values_in_one_byte),
      cmocka_unit_test(test_varint_encodes_300_as_two_bytes),
      cmocka_unit_test(test_varint_encodes_128_with_a_continuation_byte),
      cmocka_unit_test(test_varint_encodes_uint64_max_in_ten_bytes),
      cmocka_unit_test(test_varint_size_matches_bytes_written),
      cmocka_unit_test(test_tag_combines_field_number_and_wire_type),
      cmocka_unit_test(test_uint64_field_150_encodes_as_08_96_01),
      cmocka_unit_test(test_int64_minus_one_takes_ten_bytes),
      cmocka_unit_test(test_zero_and_bool_fields_are_written),
      cmocka_unit_test(test_string_field_testing_encodes_with_length_prefix),
      cmocka_unit_test(test_empty_string_field_has_zero_length),
      cmocka_unit_test(test_bytes_field_copies_binary_data),
      cmocka_unit_test(test_packed_uint64_matches_documented_example),
      cmocka_unit_test(test_packed_int64_encodes_negative_values_in_ten_bytes),
      cmocka_unit_test(test_packed_field_with_no_elements_writes_nothing),
      cmocka_unit_test(test_nested_message_matches_documented_example),
      cmocka_unit_test(test_empty_nested_message_has_zero_length),
      cmocka_unit_test(test_nested_messages_nest_two_levels),
      cmocka_unit_test(test_nested_message_longer_than_127_bytes_gets_two_byte_length),
      cmocka_unit_test(test_buffer_grows_and_keeps_earlier_bytes),
      cmocka_unit_test(test_clear_keeps_memory_and_restarts_at_zero),
      cmocka_unit_test(test_out_of_memory_sets_failed_and_drops_later_appends),
      cmocka_unit_test(test_out_of_memory_inside_nested_message_is_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
