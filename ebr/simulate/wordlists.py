"""Embedded word lists: English vocabulary, city names, Chinese materials and variant characters.

Chinese category, brand and modifier words come from jieba's dictionary (see `vocab.py`); the lists here fill
what that dictionary cannot give by part-of-speech alone, and the whole English vocabulary.
"""

from __future__ import annotations

EN_NOUNS = """
backpack bag basket bed bench blanket blender blouse boot bottle bowl bracelet brush bucket cabinet camera
candle cap cardigan carpet case chair charger clock coat cooker cup curtain cushion desk drill dress drone
earphone easel fan figurine flask fork frame fryer glove goggles grill guitar hammer hanger hat headphone
heater helmet hoodie iron jacket jar jeans jersey kettle keyboard knife ladder lamp lantern laptop leggings
lens lipstick lock loafer mask mat mattress microphone mirror mixer monitor mop mouse mug necklace notebook
organizer oven pan pants pen pencil perfume phone pillow planter plate pot printer projector purse quilt
rack radio razor ring robe rug ruler sandal saucepan scarf scissors screwdriver serum shampoo shelf shirt
shoe shorts skillet skirt slipper sneaker soap sock sofa speaker spoon stand stapler stool stove suitcase
sunglasses sweater table tablet teapot tent thermos tie toaster toolbox toothbrush towel toy tray tripod
trousers tumbler umbrella vase vest wallet watch whisk wrench yoga-mat kayak paddle racket skateboard
scooter bicycle saddle compass binoculars telescope microscope puzzle kite doll robot marker crayon eraser
sketchbook canvas palette stroller crib bib pacifier diaper highchair leash collar aquarium birdcage
feeder litterbox harness grinder juicer steamer wok ladle spatula colander peeler grater apron napkin
tablecloth coaster doormat wardrobe dresser nightstand bookcase armchair ottoman hammock swing sprinkler
hose shovel rake trowel wheelbarrow lawnmower trimmer chainsaw generator battery flashlight cable router
modem adapter hub charger-dock stylus webcam controller joystick console cartridge smartwatch tracker
""".split()

EN_MODIFIERS = """
new premium classic portable compact deluxe original official genuine lightweight durable waterproof
foldable adjustable wireless smart mini large professional ergonomic vintage modern slim heavy-duty
rechargeable organic handmade eco-friendly quick-dry breathable anti-slip multi-purpose travel home outdoor
indoor kids family limited hot-sale best-seller trending upgraded standard basic luxury budget everyday
soft warm cool quiet fast bright sturdy stylish elegant casual sport
""".split()

EN_COLORS = """
red blue green black white grey pink purple yellow orange brown beige navy teal maroon gold silver ivory
khaki olive
""".split()

EN_MATERIALS = """
cotton linen silk leather wool cashmere denim nylon polyester bamboo oak walnut steel aluminum ceramic glass
plastic rubber velvet suede
""".split()

EN_STYLES = """
minimalist retro boho nordic industrial rustic preppy streetwear gothic coastal scandinavian japanese
french-country art-deco mid-century sporty romantic punk tropical urban
""".split()

SIZES = ["XS", "S", "M", "L", "XL", "XXL", "3XL"]

EN_BRAND_HEADS = """
ab ar bel bri cal cor dar del el fa gal har ix jo kal lu mar nor ol pra quin ro sal tor ul vel wen xa yor
zen ko mi ta lo ve su na ri
""".split()

EN_BRAND_TAILS = """
ex ora ion ium ara ent ino ova ix on ia co tek lux ley ton wood max vo ra na za ry us el
""".split()

EN_FILLER = """
delivery warranty gift box set kit pack bundle edition series version model item product piece unit pair
collection design quality support service guide manual accessory
""".split()

EN_CITIES = """
Beijing Shanghai Guangzhou Shenzhen Chengdu Hangzhou Wuhan Xian Chongqing Tianjin Nanjing Suzhou Changsha
Zhengzhou Qingdao Shenyang Dalian Xiamen Kunming Harbin Jinan Hefei Fuzhou Ningbo Wuxi Dongguan Foshan
Nanning Guiyang Taiyuan
""".split()

ZH_CITIES = """
北京 上海 广州 深圳 成都 杭州 武汉 西安 重庆 天津 南京 苏州 长沙 郑州 青岛 沈阳 大连 厦门 昆明 哈尔滨
济南 合肥 福州 宁波 无锡 东莞 佛山 南宁 贵阳 太原
""".split()

# Materials as they are written in Chinese product listings; each is kept only if jieba's dictionary has it.
ZH_MATERIALS = """
纯棉 亚麻 丝绸 真皮 皮革 羊绒 羽绒 陶瓷 不锈钢 实木 塑料 玻璃 合金 尼龙 涤纶 牛皮 羊毛 竹子 橡胶 帆布
棉布 呢绒 丝绒 搪瓷 紫砂 水晶
""".split()

# First characters of Chinese colour words (`红色`, `蓝色` ...): colours are picked from the dictionary by these.
ZH_COLOR_HEADS = "红绿白黑黄蓝灰紫褐金棕青橙粉银米咖酒藏卡杏"

# Simplified -> traditional character pairs, used to make variant-character queries (`电脑` -> `電腦`).
ZH_VARIANTS = dict(
    zip(
        "电脑机车门马鸟鱼书长东发开关时间听说话语读写实学习风云气飞龙凤乐爱国园进远还运边过达钟钱铁银锅"
        "灯热烧红绿蓝紫织纸线绳网鞋袜衬裤裙帽围镜灵宝贝钻饰颜粮饭汤饮馆视频声响乐画画剧场厨卫浴凉净洁",
        "電腦機車門馬鳥魚書長東發開關時間聽說話語讀寫實學習風雲氣飛龍鳳樂愛國園進遠還運邊過達鐘錢鐵銀鍋"
        "燈熱燒紅綠藍紫織紙線繩網鞋襪襯褲裙帽圍鏡靈寶貝鑽飾顏糧飯湯飲館視頻聲響樂畫畫劇場廚衛浴涼淨潔",
        strict=True,
    )
)
