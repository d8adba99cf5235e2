// Reports of a budget tree: the text tables, the JSON document (checked against a golden copy
// and read back with a small strict parser) and the CSV stage table, on a manual clock.
#include <frugal/frugal.hpp>
#include <frugal/report.hpp>
#include <frugal/tbb.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/fake_resident_set.hpp"
#include "support/json_reader.hpp"
#include "support/xorshift.hpp"

using namespace std::chrono_literals;

namespace {

using frugal_test::json;
using frugal_test::json_reader;

const json& stage_named(const json& budget, std::string_view name) {
  for (const json& s : budget["stages"].items)
    if (s["name"].str() == name) return s;
  throw std::runtime_error("no stage '" + std::string(name) + "'");
}

// ---- the reader itself is tested, or the tests below could pass on anything ----------------
TEST(JsonReader, AcceptsValidAndRejectsInvalidDocuments) {
  const json v = json_reader::parse(R"({"a": [1, -2.5e3, true, null], "b\n": "x\"\\y"})");
  EXPECT_EQ(v["a"][1].num(), -2500);
  EXPECT_TRUE(v["a"][2].boolean);
  EXPECT_TRUE(v["a"][3].is_null());
  EXPECT_EQ(v["b\n"].str(), "x\"\\y");
  for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "[01x]", "{\"a\" 1}", "\"\n\"", "nan", "[1] 2", "{'a':1}"})
    EXPECT_THROW(json_reader::parse(bad), std::runtime_error) << bad;
}

TEST(JsonReader, AcceptsOnlyWellFormedUtf8) {
  EXPECT_EQ(json_reader::parse("\"\xC2\xB5s \xE6\x97\xA5\xF0\x9F\x98\x80\"").str(), "\xC2\xB5s \xE6\x97\xA5\xF0\x9F\x98\x80");
  EXPECT_EQ(json_reader::parse(R"("\u00e9\ud83d\ude00")").str(), "\xC3\xA9\xF0\x9F\x98\x80");
  for (const char* bad : {"\"caf\xE9\"", "\"\xC0\xAF\"", "\"\xE0\x80\xAF\"", "\"\xED\xA0\x80\"", "\"\xF4\x90\x80\x80\"",
                          "\"\xE6\x97\"", "\"\x80\"", "\"\xFF\"", R"("\ud83d")", R"("\ude00")", "[\"a\"]\xC2\xB5"})
    EXPECT_THROW(json_reader::parse(bad), std::runtime_error) << bad;
}

// ---- strings: JSON text is UTF-8, whatever bytes names hold ----------------------------------
std::string written_string(std::string_view s) {
  std::ostringstream out;
  frugal::detail::json_writer(out).value(s);
  return out.str();
}

#define FFFD "\xEF\xBF\xBD"

// Well-formed UTF-8 passes unchanged; each maximal ill-formed subpart becomes one U+FFFD.
TEST(JsonWriter, ReplacesIllFormedUtf8AndKeepsWellFormed) {
  const std::pair<std::string, std::string> cases[] = {
      {"\xC2\xB5s", "\xC2\xB5s"},                              // µs
      {"\xE6\x97\xA5\xE6\x9C\xAC", "\xE6\x97\xA5\xE6\x9C\xAC"},  // 日本
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},              // U+1F600
      {"\xEF\xBF\xBF\xF4\x8F\xBF\xBF\x7F", "\xEF\xBF\xBF\xF4\x8F\xBF\xBF\x7F"},  // U+FFFF, U+10FFFF, DEL
      {"caf\xE9", "caf" FFFD},                                // Latin-1
      {"caf\xE9!", "caf" FFFD "!"},
      {"\xC0\xAF", FFFD FFFD},                              // overlong '/'
      {"\xE0\x80\xAF", FFFD FFFD FFFD},                      // overlong, 3 bytes
      {"\xF0\x80\x80\xAF", FFFD FFFD FFFD FFFD},              // overlong, 4 bytes
      {"\xED\xA0\x80", FFFD FFFD FFFD},                      // surrogate U+D800 encoded
      {"\xED\xBF\xBF", FFFD FFFD FFFD},                      // surrogate U+DFFF encoded
      {"\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD},              // past U+10FFFF
      {"\xF8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD},      // 5-byte form
      {"\x80\xBF", FFFD FFFD},                              // lone continuation bytes
      {"\xFE\xFF", FFFD FFFD},
      {"\xE6\x97", FFFD},                                  // truncated at the end: one U+FFFD
      {"\xF0\x9F\x98", FFFD},
      {"\xC2", FFFD},
      {"\xE6\x97" "A", FFFD "A"},                             // truncated by a byte that cannot continue it
      {"\xF0\x9F" "\"", FFFD "\\\""},                      // ... which is then written as usual
      {"\xE6\x97\xE6\x97\xA5", FFFD "\xE6\x97\xA5"},
  };
  for (const auto& [in, out] : cases) {
    EXPECT_EQ(written_string(in), "\"" + out + "\"") << "input bytes: " << ::testing::PrintToString(in);
    EXPECT_NO_THROW(json_reader::parse(written_string(in))) << ::testing::PrintToString(in);
  }
}

// Any bytes at all: the output is valid JSON that reads back as the input when that was UTF-8.
TEST(JsonWriter, AnyBytesMakeValidJson) {
  frugal_test::xorshift64 next{0x2545F4914F6CDD1Du};
  for (int i = 0; i < 20000; ++i) {
    std::string in(next() % 12, '\0');
    for (char& c : in) c = static_cast<char>(next() % 4 ? 0x80 + next() % 0x80 : next() % 0x80);
    const std::string text = written_string(in);
    json doc;
    ASSERT_NO_THROW(doc = json_reader::parse(text)) << ::testing::PrintToString(in) << " -> " << text;
    if (text.find(FFFD) == std::string::npos) {
      EXPECT_EQ(doc.str(), in) << ::testing::PrintToString(in);
    }
  }
}

// ---- text ------------------------------------------------------------------------------------
// Energy read from a root that does not exist: the same reason on every machine.
constexpr const char* no_powercap = "/frugal-test-no-powercap";
#define FRUGAL_TEST_NO_POWERCAP_WHY \
  "no /frugal-test-no-powercap: the kernel exposes no powercap interface here (no RAPL driver, a virtual machine, or not Linux)"

TEST(TextReport, ShowsUsedAgainstLimitStagesAndChildren) {
  frugal::manual_clock clock;
  frugal::energy_counter no_rapl{no_powercap};
  frugal::budget run{"train", frugal::limits{}.wall(10s).flops(1000)};
  run.set_energy_counter(no_rapl);
  frugal::budget& eval = run.child("eval");
  {
    frugal::scope e{run, "epoch"};
    {
      frugal::scope s{run, "step"};
      frugal::add_flops(300);
      clock.advance(2s);
    }
    frugal::scope s{eval, "test"};
    frugal::add_flops(100);
    clock.advance(2s);
  }
  const std::string text = frugal::text_report(run);
  std::ostringstream printed;
  frugal::print_report(printed, run);
  EXPECT_EQ(text, printed.str());
  const std::string expected =
      "budget train\n"
      "  resource    used   limit  used %\n"
      "  wall      4.00 s  10.0 s  40.0 %\n"
      "  flops        400   1.00k  40.0 %\n"
      "  energy: not measured: " FRUGAL_TEST_NO_POWERCAP_WHY "\n"
      "\n"
      "  stage  calls    wall    share  flops\n"
      "  epoch      1  4.00 s  100.0 %    400\n"
      "  step       1  2.00 s   50.0 %    300\n"
      "\n"
      "  budget train/eval\n"
      "    resource    used  limit  used %\n"
      "    wall      2.00 s      -       -\n"
      "    flops        100      -       -\n"
      "\n"
      "    stage  calls    wall    share  flops\n"
      "    test       1  2.00 s  100.0 %    100\n";
  EXPECT_EQ(text, expected);
}

// ---- JSON --------------------------------------------------------------------------------------
TEST(JsonReport, GoldenDocument) {
  frugal::manual_clock clock;
  const frugal_test::fake_resident_set rss(48 << 20);  // the resident set every budget reads
  frugal::energy_counter no_rapl{no_powercap};
  frugal::budget run{"train", frugal::limits{}.wall(10s).flops(1000).units("samples", 64).cost(1, "USD")};
  run.set_energy_counter(no_rapl);
  run.set_price(frugal::price{}.instance_hour(3.6).currency("USD"));  // 0.001 USD a second of wall
  frugal::budget& eval = run.child("eval", frugal::limits{}.wall(2s));
  {
    frugal::scope e{run, "epoch"};
    {
      frugal::scope s{run, "step"};
      frugal::add_flops(600);
      frugal::add_units("samples", 32);
      clock.advance(1500ms);
    }
    frugal::scope s{eval, "test"};
    frugal::add_flops(400);
    clock.advance(500ms);
  }
  const std::string expected =
      R"({"frugal_version":")" FRUGAL_VERSION_STRING R"(",)"
      R"("units_of_measure":{"wall":"seconds","cpu":"seconds","flops":"count","allocations":"count",)"
      R"("alloc_bytes":"bytes","peak_bytes":"bytes","rss_bytes":"bytes","cost":"money","energy":"joules"},)"
      R"("resource_kinds":{"wall":"consumable","cpu":"consumable","flops":"consumable","allocations":"consumable",)"
      R"("alloc_bytes":"consumable","peak_bytes":"level","rss_bytes":"level","cost":"consumable","energy":"consumable"},)"
      R"("budget":{"name":"train","path":"train",)"
      R"("limits":{"wall":10,"cpu":null,"flops":1000,"allocations":null,"alloc_bytes":null,"peak_bytes":null,)"
      R"("rss_bytes":null,"cost":1,"energy":null,"units":{"samples":64},"currency":"USD"},)"
      R"("price":{"instance_hour":3.6,"core_hour":0,"flop":0,"currency":"USD"},)"
      R"("used":{"wall":2,"cpu":null,"flops":1000,"allocations":0,"alloc_bytes":0,"peak_bytes":null,)"
      R"("rss_bytes":50331648,"cost":0.002,"energy":null,"units":{"samples":32}},)"
      R"("energy_unavailable":")" FRUGAL_TEST_NO_POWERCAP_WHY R"(",)"
      R"("exhausted":["flops"],"levels_crossed":[],"fraction_used":1,)"
      R"("stages":[)"
      R"({"name":"epoch","calls":1,"wall":2,"share":1,"flops":1000,"allocations":0,"alloc_bytes":0,)"
      R"("peak_rise_bytes":0,"units":{"samples":32}},)"
      R"({"name":"step","calls":1,"wall":1.5,"share":0.75,"flops":600,"allocations":0,"alloc_bytes":0,)"
      R"("peak_rise_bytes":0,"units":{"samples":32}}],"resumed":null,)"
      R"("children":[{"name":"eval","path":"train/eval",)"
      R"("limits":{"wall":2,"cpu":null,"flops":null,"allocations":null,"alloc_bytes":null,"peak_bytes":null,)"
      R"("rss_bytes":null,"cost":null,"energy":null,"units":{},"currency":null},)"
      R"("price":{"instance_hour":3.6,"core_hour":0,"flop":0,"currency":"USD"},)"
      R"("used":{"wall":0.5,"cpu":null,"flops":400,"allocations":0,"alloc_bytes":0,"peak_bytes":null,)"
      R"("rss_bytes":50331648,"cost":5e-04,"energy":null,"units":{}},)"
      R"("energy_unavailable":")" FRUGAL_TEST_NO_POWERCAP_WHY R"(",)"
      R"("exhausted":[],"levels_crossed":[],"fraction_used":0.25,)"
      R"("stages":[{"name":"test","calls":1,"wall":0.5,"share":1,"flops":400,"allocations":0,"alloc_bytes":0,)"
      R"("peak_rise_bytes":0,"units":{}}],"resumed":null,)"
      R"("children":[]}]}})"
      "\n";
  std::ostringstream written;
  frugal::write_json_report(written, run);
  EXPECT_EQ(written.str(), frugal::json_report(run));
  if (run.measures_peak()) GTEST_SKIP() << "allocation hooks linked: peak_bytes is measured, the golden has null";
  EXPECT_EQ(frugal::json_report(run), expected);
  EXPECT_NO_THROW(json_reader::parse(expected));
}

TEST(JsonReport, UnmeasuredCpuIsNullMeasuredCpuIsANumber) {
  frugal::manual_clock clock;
  frugal::budget quiet{"quiet"};
  frugal::budget timed{"timed"};
  timed.measure_cpu();
  for (frugal::budget* b : {&quiet, &timed}) {
    frugal::scope s{*b, "work"};
    clock.advance_cpu(250ms);
  }
  EXPECT_TRUE(json_reader::parse(frugal::json_report(quiet))["budget"]["used"]["cpu"].is_null());
  EXPECT_EQ(json_reader::parse(frugal::json_report(timed))["budget"]["used"]["cpu"].num(), 0.25);
}

TEST(JsonReport, NoLimitsMeansNullLimitsNothingExhaustedAndNoFraction) {
  frugal::budget b{"free"};
  const json doc = json_reader::parse(frugal::json_report(b));
  for (frugal::resource r : frugal::all_resources)
    EXPECT_TRUE(doc["budget"]["limits"][frugal::to_string(r)].is_null()) << frugal::to_string(r);
  EXPECT_TRUE(doc["budget"]["exhausted"].items.empty());
  EXPECT_TRUE(doc["budget"]["levels_crossed"].items.empty());
  EXPECT_EQ(doc["budget"]["fraction_used"].num(), 0);
  EXPECT_TRUE(doc["budget"]["stages"].items.empty());
  EXPECT_TRUE(doc["budget"]["children"].items.empty());
  // No scope ever opened: no wall time, so a stage share cannot be computed.
  EXPECT_EQ(doc["budget"]["used"]["wall"].num(), 0);
}

TEST(JsonReport, EscapesNamesAndReadsBackTheSameNames) {
  frugal::budget run{"run \"A\"\\\n\t1"};
  frugal::budget& child = run.child("x,y\x01");
  {
    frugal::scope s{child, std::string("stage \"q\"")};
    frugal::add_units("tokens", 3);
  }
  const json doc = json_reader::parse(frugal::json_report(run));
  EXPECT_EQ(doc["budget"]["name"].str(), "run \"A\"\\\n\t1");
  EXPECT_EQ(doc["budget"]["children"][0]["name"].str(), "x,y\x01");
  EXPECT_EQ(doc["budget"]["children"][0]["path"].str(), "run \"A\"\\\n\t1/x,y\x01");
  EXPECT_EQ(doc["budget"]["children"][0]["stages"][0]["name"].str(), "stage \"q\"");
  EXPECT_EQ(doc["budget"]["used"]["units"]["tokens"].num(), 3);
}

// Names are bytes: a Latin-1 budget name, an overlong child, an encoded surrogate as a stage, a
// stage cut short at its end; report.json stays valid UTF-8, with U+FFFD where bytes were bad.
TEST(JsonReport, NamesThatAreNotUtf8BecomeValidUtf8) {
  frugal::budget run{"caf\xE9"};
  frugal::budget& child = run.child("\xC0\xAF");
  {
    frugal::scope s{run, std::string("\xED\xA0\x80")};
    frugal::scope t{child, std::string("\xE6\x97\xA5\xE6\x9C\xAC \xC2\xB5s \xE6\x97")};
  }
  const std::string text = frugal::json_report(run);
  json doc;
  ASSERT_NO_THROW(doc = json_reader::parse(text)) << text;
  EXPECT_EQ(doc["budget"]["name"].str(), "caf" FFFD);
  EXPECT_EQ(doc["budget"]["stages"][0]["name"].str(), FFFD FFFD FFFD);
  EXPECT_EQ(doc["budget"]["children"][0]["name"].str(), FFFD FFFD);
  EXPECT_EQ(doc["budget"]["children"][0]["path"].str(), "caf" FFFD "/" FFFD FFFD);
  EXPECT_EQ(doc["budget"]["children"][0]["stages"][0]["name"].str(), "\xE6\x97\xA5\xE6\x9C\xAC \xC2\xB5s " FFFD);
}

TEST(JsonReport, WholeAmountsAreIntegersOthersRoundTrip) {
  frugal::budget run{"r", frugal::limits{}.flops(2.5e15).wall(std::chrono::duration<double>(0.1)).alloc_bytes(1e300)};
  const std::string text = frugal::json_report(run);
  EXPECT_NE(text.find(R"("flops":2500000000000000,)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("wall":0.1,)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("alloc_bytes":1e+300,)"), std::string::npos) << text;
  const json doc = json_reader::parse(text);
  EXPECT_EQ(doc["budget"]["limits"]["flops"].num(), 2.5e15);
  EXPECT_EQ(doc["budget"]["limits"]["wall"].num(), 0.1);
  EXPECT_EQ(doc["budget"]["limits"]["alloc_bytes"].num(), 1e300);
}

TEST(JsonReport, ExhaustedListsEveryResourceAndUnitAtItsLimit) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.wall(1s).flops(100).units("samples", 10).units("tokens", 5)};
  {
    frugal::scope s{run, "step"};
    clock.advance(1s);
    frugal::add_flops(50);
    frugal::add_units("samples", 10);
  }
  const json doc = json_reader::parse(frugal::json_report(run));
  const json& exhausted = doc["budget"]["exhausted"];
  ASSERT_EQ(exhausted.items.size(), 2u);
  EXPECT_EQ(exhausted[0].str(), "wall");
  EXPECT_EQ(exhausted[1].str(), "samples");
  EXPECT_EQ(doc["budget"]["fraction_used"].num(), run.fraction_used());
  // A limited unit nothing was charged to is reported at 0, not left out.
  EXPECT_EQ(doc["budget"]["used"]["units"]["tokens"].num(), 0);
}

// Conservation, as a reader of report.json checks it: with oneTBB workers charging FLOPs, a
// budget's total equals its outermost stage's and the sum of its children's and own stages.
TEST(JsonReport, TotalsEqualTheSumOfTheStagesWithWorkerThreads) {
  frugal::budget run{"train"};
  frugal::budget& eval = run.child("eval");
  for (int epoch = 0; epoch < 3; ++epoch) {
    frugal::scope e{run, "epoch"};
    {
      frugal::scope s{run, "forward"};
      frugal::parallel_for(0, 1000, [](int i) { frugal::add_flops(static_cast<std::uint64_t>(i)); });
    }
    {
      frugal::scope s{run, "backward"};
      frugal::parallel_for(0, 1000, [](int) { frugal::add_flops(2); });
    }
    frugal::scope s{eval, "evaluate"};
    frugal::parallel_for(0, 100, [](int) { frugal::add_flops(7); });
  }
  const json doc = json_reader::parse(frugal::json_report(run));
  const json& train = doc["budget"];
  const json& ev = train["children"][0];
  const double forward = stage_named(train, "forward")["flops"].num();
  const double backward = stage_named(train, "backward")["flops"].num();
  const double evaluate = stage_named(ev, "evaluate")["flops"].num();
  EXPECT_EQ(forward, 3 * 999 * 1000 / 2);
  EXPECT_EQ(backward, 3 * 2000);
  EXPECT_EQ(evaluate, 3 * 700);
  EXPECT_EQ(ev["used"]["flops"].num(), evaluate);
  EXPECT_EQ(stage_named(train, "epoch")["flops"].num(), forward + backward + evaluate);
  EXPECT_EQ(train["used"]["flops"].num(), stage_named(train, "epoch")["flops"].num());
  EXPECT_EQ(stage_named(train, "epoch")["calls"].num(), 3);
  EXPECT_EQ(stage_named(train, "forward")["calls"].num(), 3);  // workers continue scopes, never call them
}

// Every builtin resource has its kind beside its unit of measure; a level is never exhausted and
// never counts towards fraction_used, which is the budget's own figure.
TEST(JsonReport, LevelsHaveTheirOwnKindAndNeverExhaustTheBudget) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.wall(4s).peak_bytes(0)};
  {
    frugal::scope s{run, "step"};
    clock.advance(1s);
  }
  const json doc = json_reader::parse(frugal::json_report(run));
  for (frugal::resource r : frugal::all_resources)
    EXPECT_EQ(doc["resource_kinds"][frugal::to_string(r)].str(), frugal::to_string(frugal::kind_of_resource(r)));
  EXPECT_EQ(doc["resource_kinds"]["peak_bytes"].str(), "level");
  // A zero ceiling with nothing measured (no hooks here) or a heap at 0 is reached, not crossed.
  EXPECT_TRUE(doc["budget"]["exhausted"].items.empty());
  EXPECT_EQ(doc["budget"]["fraction_used"].num(), 0.25);
  EXPECT_EQ(doc["budget"]["fraction_used"].num(), run.fraction_used());
  EXPECT_EQ(doc["budget"]["levels_crossed"].items.size(), run.crossed_levels().size());
}

TEST(TextReport, MarksLevelRows) {
  frugal::manual_clock clock;
  frugal::budget run{"run", frugal::limits{}.wall(4s).peak_bytes(64.0 * 1024 * 1024)};
  { frugal::scope s{run, "step"}; }
  const std::string text = frugal::text_report(run);
  EXPECT_NE(text.find("peak_bytes (level)"), std::string::npos) << text;
  EXPECT_EQ(text.find("crossed"), std::string::npos) << text;
  EXPECT_EQ(text.find("wall (level)"), std::string::npos) << text;
}

// ---- CSV -------------------------------------------------------------------------------------
TEST(CsvReport, OneRowPerStageOfTheTreeWithUnitColumns) {
  frugal::manual_clock clock;
  frugal::budget run{"train"};
  frugal::budget& eval = run.child("eval");
  {
    frugal::scope e{run, "epoch"};
    {
      frugal::scope s{run, "step, \"fast\""};
      frugal::add_flops(600);
      frugal::add_units("samples", 32);
      clock.advance(1500ms);
    }
    frugal::scope s{eval, "test"};
    frugal::add_flops(400);
    frugal::add_units("images", 8);
    clock.advance(500ms);
  }
  const std::string expected =
      "budget,stage,calls,wall_s,share,flops,allocations,alloc_bytes,peak_rise_bytes,samples,images\n"
      "train,epoch,1,2,1,1000,0,0,0,32,8\n"
      "train,\"step, \"\"fast\"\"\",1,1.5,0.75,600,0,0,0,32,0\n"
      "train/eval,test,1,0.5,1,400,0,0,0,0,8\n";
  std::ostringstream written;
  frugal::write_stages_csv(written, run);
  EXPECT_EQ(written.str(), expected);
  EXPECT_EQ(frugal::stages_csv(run), expected);
}

TEST(CsvReport, ShareIsEmptyWithoutWallTimeAndHeaderAlone) {
  frugal::manual_clock clock;
  frugal::budget run{"r"};
  EXPECT_EQ(frugal::stages_csv(run), "budget,stage,calls,wall_s,share,flops,allocations,alloc_bytes,peak_rise_bytes\n");
  { frugal::scope s{run, "instant"}; }
  EXPECT_EQ(frugal::stages_csv(run),
            "budget,stage,calls,wall_s,share,flops,allocations,alloc_bytes,peak_rise_bytes\nr,instant,1,0,,0,0,0,0\n");
}

}  // namespace
