#include "storage/fault_injecting_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "storage/test_util.h"

namespace tidemark::storage {
namespace {

using ::testing::HasSubstr;

class FaultInjectingStoreTest : public ::testing::Test {
 protected:
  FaultInjectingStore store_{make_memory_store()};
};

TEST_F(FaultInjectingStoreTest, FailsTheNthWriteOnly) {
  store_.fail_nth_write(3);
  EXPECT_OK(store_.put("a", "1"));
  EXPECT_OK(store_.put_if_absent("b", "2"));
  Status third = store_.put("c", "3");
  EXPECT_EQ(third.code(), StatusCode::kIoError);
  EXPECT_THAT(third.message(), HasSubstr("injected fault writing object 'c'"));
  EXPECT_EQ(store_.inner().get("c").status().code(), StatusCode::kNotFound) << "a failed put must write nothing";
  EXPECT_OK(store_.put("c", "3"));
  EXPECT_OK(store_.put("d", "4"));
}

TEST_F(FaultInjectingStoreTest, CrashFailsEverythingUntilRecover) {
  store_.crash_after_writes(2);
  EXPECT_OK(store_.put("a", "1"));
  EXPECT_FALSE(store_.crashed());
  EXPECT_OK(store_.put("b", "2"));
  EXPECT_TRUE(store_.crashed());
  EXPECT_THAT(store_.put("c", "3").message(), HasSubstr("injected crash"));
  EXPECT_EQ(store_.get("a").status().code(), StatusCode::kIoError);
  EXPECT_EQ(store_.list("").status().code(), StatusCode::kIoError);
  EXPECT_EQ(store_.remove("a").code(), StatusCode::kIoError);
  EXPECT_EQ(store_.put_if_absent("d", "4").code(), StatusCode::kIoError);
  store_.recover();
  EXPECT_EQ(store_.get("b").value(), "2");
  EXPECT_EQ(store_.get("c").status().code(), StatusCode::kNotFound);
  store_.crash_after_writes(0);
  EXPECT_TRUE(store_.crashed());
}

TEST_F(FaultInjectingStoreTest, NoSpaceFailsWritesButNotReads) {
  ASSERT_OK(store_.put("a", "1"));
  store_.set_no_space(true);
  Status st = store_.put("b", "2");
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_THAT(st.message(), HasSubstr("'b'"));
  EXPECT_THAT(st.message(), HasSubstr("ENOSPC"));
  EXPECT_EQ(store_.get("a").value(), "1");
  store_.set_no_space(false);
  EXPECT_OK(store_.put("b", "2"));
}

TEST_F(FaultInjectingStoreTest, CorruptFlipsOneByte) {
  ASSERT_OK(store_.put("obj", "abcd"));
  ASSERT_OK(store_.corrupt("obj", 2));
  std::string got = store_.get("obj").value();
  EXPECT_EQ(got, std::string("ab") + static_cast<char>(~'c') + "d");
  EXPECT_EQ(store_.corrupt("obj", 4).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.corrupt("missing", 0).code(), StatusCode::kNotFound);
}

TEST_F(FaultInjectingStoreTest, CountsCallsAndBytes) {
  ASSERT_OK(store_.put("a", "12345"));
  ASSERT_OK(store_.put_if_absent("b", "678"));
  EXPECT_EQ(store_.put_if_absent("b", "xx").code(), StatusCode::kAlreadyExists);
  ASSERT_OK(store_.get("a").status());
  EXPECT_FALSE(store_.get("zz").is_ok());
  ASSERT_OK(store_.list("").status());
  ASSERT_OK(store_.remove("a"));
  StoreCounters c = store_.counters();
  EXPECT_EQ(c.puts, 1u);
  EXPECT_EQ(c.put_if_absents, 2u);
  EXPECT_EQ(c.gets, 2u);
  EXPECT_EQ(c.lists, 1u);
  EXPECT_EQ(c.removes, 1u);
  EXPECT_EQ(c.bytes_written, 8u);
  EXPECT_EQ(c.bytes_read, 5u);
  store_.reset_counters();
  EXPECT_EQ(store_.counters().puts, 0u);
  EXPECT_EQ(store_.describe(), "faulty(memory)");
}

}  // namespace
}  // namespace tidemark::storage
